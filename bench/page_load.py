"""How long a run page takes to load, first visit and repeat visit, in headless Chromium
against the web server ``make run`` starts (gunicorn and whitenoise, as in the Procfile).

It makes a throw-away var directory, a user and a finished GRPO run of ``--steps`` steps
(recorded through the same services a worker calls), collects the static files, starts
gunicorn, and opens the run page ``--visits`` times in one browser profile: the first visit
has an empty cache, the others are repeat visits. Prints one JSON line: per visit the time to
the load event and to the first chart drawn, and the bytes that came over the network.

    .venv/bin/python bench/page_load.py --steps 200
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import free_port, start_web  # noqa: E402

SETUP = """
from django.contrib.auth import get_user_model
from tests.runs_helpers import make_dataset, make_run
user = get_user_model().objects.create_user(username="bench", password="bench-pass-123")
run = make_run(user, make_dataset(user), name="bench run", steps={steps},
               hyperparameters={{"max_steps": {steps}, "group_size": 4}})
print("RUN", run.pk)
"""


def prepare(env: dict[str, str], steps: int) -> int:
    py = sys.executable
    for cmd in (["manage.py", "migrate", "--noinput", "-v", "0"],
                ["manage.py", "collectstatic", "--noinput", "-v", "0"]):
        subprocess.run([py, *cmd], cwd=ROOT, env=env, check=True)
    out = subprocess.run([py, "manage.py", "shell", "-c", SETUP.format(steps=steps)],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    return int(out.split("RUN", 1)[1].split()[0])


CHART_DRAWN = "() => { const c = document.getElementById('chart-0'); return c && c.data; }"
TIMING = """() => { const n = performance.getEntriesByType('navigation')[0];
  const r = performance.getEntriesByType('resource');
  const plotly = r.filter(e => e.name.includes('plotly')).map(e => e.transferSize);
  return {load_ms: n.loadEventEnd, plotly_bytes: plotly.length ? plotly[0] : null,
          bytes: n.transferSize + r.reduce((a, e) => a + e.transferSize, 0)}; }"""


def measure(base: str, run_id: int, visits: int, *, mbps: float, rtt_ms: float,
            later_s: float) -> list[dict[str, float]]:
    """``visits`` visits in a row, then (``later_s`` > 0) one more after that many seconds,
    when a short cache lifetime has run out."""
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--headless", "--no-sandbox"])
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(base + "/accounts/login/")
        page.fill("#id_username", "bench")
        page.fill("#id_password", "bench-pass-123")
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        if mbps:  # a slower network than loopback: a remote office, a VPN
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": rtt_ms, "downloadThroughput": mbps * 125_000,
                "uploadThroughput": mbps * 125_000})
        for i in range(visits + (1 if later_s else 0)):
            if i == visits:
                time.sleep(later_s)
            start = time.monotonic()
            page.goto(f"{base}/runs/{run_id}/", wait_until="load")
            page.wait_for_function(CHART_DRAWN, timeout=60_000)
            chart_ms = (time.monotonic() - start) * 1000
            out.append({**page.evaluate(TIMING), "chart_ms": round(chart_ms),
                        "later": i == visits})
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--visits", type=int, default=6)
    parser.add_argument("--mbps", type=float, default=20.0,
                        help="network throughput to emulate (0: loopback as it is)")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round-trip time to emulate")
    parser.add_argument("--later-s", type=float, default=70.0,
                        help="one more visit after this many seconds (0: none)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL",
                                                              "redis://127.0.0.1:6379/14"))
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="page-load-"))
    env = {**os.environ, "RLHF_VAR_DIR": str(var), "REDIS_URL": args.redis_url,
           "RLHF_MODELS_DIR": str(ROOT / "var/models"), "DJANGO_SECRET_KEY": "bench-" * 10,
           "RLHF_EVENTS_PREFIX": f"rlhf-bench-{os.getpid()}:run-events:",
           "DJANGO_SETTINGS_MODULE": "webapp.settings", "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    server = None
    try:
        run_id = prepare(env, args.steps)
        port = free_port()
        server = start_web(port, env)
        visits = measure(f"http://127.0.0.1:{port}", run_id, args.visits, mbps=args.mbps,
                         rtt_ms=args.rtt_ms, later_s=args.later_s)
    finally:
        if server:
            server.terminate()
            server.wait(10)
        shutil.rmtree(var, ignore_errors=True)
    first = visits[0]
    repeat = [v for v in visits[1:] if not v["later"]]
    later = [v for v in visits if v["later"]]
    print(json.dumps({
        "steps": args.steps, "mbps": args.mbps, "rtt_ms": args.rtt_ms,
        "later_load_ms": round(later[0]["load_ms"]) if later else None,
        "later_chart_ms": later[0]["chart_ms"] if later else None,
        "later_bytes": later[0]["bytes"] if later else None,
        "first_load_ms": round(first["load_ms"]),
        "first_chart_ms": first["chart_ms"], "first_bytes": first["bytes"],
        "plotly_bytes_first": first["plotly_bytes"],
        "repeat_load_ms_median": round(statistics.median(v["load_ms"] for v in repeat)),
        "repeat_chart_ms_median": round(statistics.median(v["chart_ms"] for v in repeat)),
        "repeat_bytes_median": round(statistics.median(v["bytes"] for v in repeat)),
        "visits": visits}))


if __name__ == "__main__":
    main()
