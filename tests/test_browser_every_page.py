"""In headless Chromium, every page of the site at a phone's width (390 px) and a laptop's
(1280 px): none scrolls sideways, none asks another host for anything (the test blocks and
records such requests, as an air-gapped network would), none logs a console error.

Set PAGE_SCREENSHOTS=/some/dir to keep a full-page picture of each for a look. Django's
admin is left out: it is Django's own page, for staff, with its own responsive styles."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser import chromium_page, sign_in
from tests.hf_cache import cache_model
from tests.runs_helpers import make_dataset, make_run
from tests.site_data import make_site
from tests.training_helpers import TINY_LLAMA
from webapp.runs.models import ModelDownload, Run
from webapp.workers_presence import presence_client, presence_remove, presence_write

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
SHOTS = os.environ.get("PAGE_SCREENSHOTS")
WIDTHS = (390, 1280)

# Whether the page scrolls sideways, and if so the elements that stick out past the
# viewport's right edge (outside any scrolling box), for the failure message.
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= width) return [];
  const inScroller = (e) => {
    for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible') return true;
    }
    return false;
  };
  const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
    + (typeof e.className === 'string' && e.className ? '.' + e.className.replace(/ /g, '.') : '');
  const out = Array.from(document.querySelectorAll('body *'))
    .filter(e => e.getBoundingClientRect().right > width + 1 && !inScroller(e))
    .slice(0, 8).map(e => name(e) + ' right=' + Math.round(e.getBoundingClientRect().right));
  return out.length ? out : ['scrollWidth=' + document.documentElement.scrollWidth];
}"""


def site_pages(site) -> list[tuple[str, str, int]]:
    """(name, path, expected status) of every page a signed-in person can open."""
    g, p, rm = site.grpo.pk, site.ppo.pk, site.reward_model.pk
    return [
        ("home", "/", 200), ("runs", "/runs/", 200), ("new-grpo", "/runs/new/", 200),
        ("new-ppo", "/runs/new/?algorithm=ppo", 200),
        ("new-reward-model", "/runs/new/?algorithm=reward_model", 200),
        ("run-grpo", f"/runs/{g}/", 200), ("run-ppo", f"/runs/{p}/", 200),
        ("run-reward-model", f"/runs/{rm}/", 200), ("compare", f"/runs/compare/?ids={g},{p}", 200),
        ("datasets", "/datasets/", 200), ("dataset", f"/datasets/{site.prompts}/", 200),
        ("dataset-pairs", f"/datasets/{site.preferences}/", 200),
        ("labeling", "/labeling/", 200), ("batch", f"/labeling/{site.batch}/", 200),
        ("rank", f"/labeling/{site.batch}/rank/", 200),
        ("models", "/models/", 200), ("tokens", "/accounts/tokens/", 200),
        ("workers", "/workers/", 200),
        ("playground", "/playground/", 200),
        ("api-docs", "/api/docs", 200), ("not-found", "/no-such-page/", 404),
    ]


SIGNED_OUT = [("login", "/accounts/login/", 200), ("signup", "/accounts/signup/", 200)]


class Watch:
    """What a page did that it must not: requests to other hosts, console errors."""

    def __init__(self, tab, base: str):
        self.host = urlsplit(base).netloc
        self.foreign: list[str] = []
        self.errors: list[str] = []
        tab.context.route("**/*", self._route)
        tab.on("console", lambda m: m.type == "error" and self.errors.append(
            f"{m.text} ({m.location.get('url', '')})"))
        tab.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def _route(self, route):
        url = route.request.url
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and \
                urlsplit(url).netloc != self.host:
            self.foreign.append(url)
            return route.abort()
        return route.continue_()

    def take(self) -> tuple[list[str], list[str]]:
        out = (self.foreign[:], self.errors[:])
        self.foreign.clear()
        self.errors.clear()
        return out


def visit(tab, watch, base, name, path, status, width):
    tab.set_viewport_size({"width": width, "height": 900})
    answer = tab.goto(base + path, wait_until="load")
    assert answer.status == status, f"{path}: {answer.status}"
    if name.startswith("run-") or name == "compare":
        tab.wait_for_selector(".js-plotly-plot .main-svg")  # the charts are drawn
    if name == "api-docs":
        tab.wait_for_selector(".swagger-ui .opblock")  # Swagger UI rendered the API
    tab.wait_for_timeout(300)  # late layout: fonts, fragments, resized charts
    overflow = tab.evaluate(OVERFLOW)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(SHOTS) / f"{name}-{width}.png"), full_page=True)
    foreign, errors = watch.take()
    if status == 404:  # the browser reports the page's own 404 in the console
        errors = [e for e in errors if "404" not in e]
    return {"overflow": overflow, "foreign": foreign, "errors": errors}


GPU_WORKER = "gpu-worker-1@a-rather-long-host-name.example"


def _cached_and_working(settings, tmp_path, site) -> None:
    """A model in the Hugging Face cache (a long name) and one refused, and a worker with two
    GPUs running a run, for the models and workers pages (the user is staff)."""
    settings.HF_HUB_CACHE = tmp_path / "hub"
    cache_model(settings.HF_HUB_CACHE, "HuggingFaceTB/SmolLM2-135M-Instruct-with-a-long-name",
                TINY_LLAMA)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (pickled / "pytorch_model.bin").write_bytes(b"0")
    cache_model(settings.HF_HUB_CACHE, "some-org/pickled-weights", pickled)
    gpu = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "total_mb": 81559,
           "free_mb": 80100, "bf16": True, "capability": "9.0", "threads": None}
    settings.WORKER_PRESENCE_INTERVAL_S = 300  # present through the whole walk
    presence_write(presence_client(), name=GPU_WORKER,
                   queues=["training"], pid=1,
                   devices=[gpu | {"index": 0}, gpu | {"index": 1}])
    user = site.grpo.owner
    ModelDownload.objects.create(repo_id="some-org/a-model-whose-name-is-rather-long-indeed",
                                 status="failed", requested_by=user, error=(
                                     "The hub cannot be reached from this worker (offline: "
                                     "HF_HUB_OFFLINE is set, or no network). Copy it into the "
                                     "Hugging Face cache or register a directory."))
    ModelDownload.objects.create(repo_id="Qwen/Qwen2.5-0.5B-Instruct", status="downloading",
                                 requested_by=user, bytes_total=988_000_000,
                                 bytes_done=420_000_000)
    held = make_run(user, make_dataset(user, "held"), name="on the GPUs", steps=1, finish=None)
    Run.objects.filter(pk=held.pk).update(worker=GPU_WORKER)
    user.is_staff = True
    user.save()


def test_every_page_fits_a_phone_and_a_laptop_and_asks_no_other_host(
        live_server, api, user, other_api, transactional_db, settings, tmp_path, request):
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"
    site = make_site(api, user, other_api)
    _cached_and_working(settings, tmp_path, site)
    request.addfinalizer(lambda: presence_remove(presence_client(), GPU_WORKER))
    problems = {}
    with chromium_page(height=900) as tab:
        watch = Watch(tab, live_server.url)
        for name, path, status in SIGNED_OUT:
            for width in WIDTHS:
                problems[f"{name}@{width}"] = visit(tab, watch, live_server.url, name, path,
                                                    status, width)
        sign_in(tab, live_server.url)
        watch.take()
        for name, path, status in site_pages(site):
            for width in WIDTHS:
                problems[f"{name}@{width}"] = visit(tab, watch, live_server.url, name, path,
                                                    status, width)
    bad = {page: found for page, found in problems.items() if any(found.values())}
    assert not bad, "\n".join(f"{page}: {found}" for page, found in bad.items())
    assert len(problems) == 2 * (len(SIGNED_OUT) + len(site_pages(site)))


def test_on_a_phone_the_navigation_opens_from_the_menu_button(live_server, user,
                                                              transactional_db):
    with chromium_page(height=800) as tab:
        sign_in(tab, live_server.url)
        tab.set_viewport_size({"width": 390, "height": 800})
        tab.goto(live_server.url + "/runs/")
        assert tab.is_visible("#menu-toggle") and tab.is_hidden("#site-nav")
        tab.click("#menu-toggle")
        assert tab.get_attribute("#menu-toggle", "aria-expanded") == "true"
        assert tab.is_visible("#site-nav a[href='/datasets/']")
        if SHOTS:
            tab.screenshot(path=str(Path(SHOTS) / "menu-open-390.png"))
        tab.click("#site-nav a[href='/datasets/']")
        tab.wait_for_url(live_server.url + "/datasets/")
        tab.set_viewport_size({"width": 1280, "height": 800})
        assert tab.is_hidden("#menu-toggle") and tab.is_visible("#site-nav")
