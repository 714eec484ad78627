"""In headless Chromium: a person ranks with the keyboard alone (pick, move, tie, submit),
skips, undoes, and drags; the stored rankings are what they did. The batch rows are made
directly in the database, so no worker is needed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.browser import chromium_page, sign_in
from tests.labeling_helpers import make_batch, response_ids
from webapp.labeling.models import Ranking

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

# Set LABELING_SCREENSHOTS=/some/dir to keep pictures of the pages for a look.
SHOTS = os.environ.get("LABELING_SCREENSHOTS")


@pytest.fixture
def page():
    with chromium_page(timeout_ms=20_000) as tab:
        yield tab


def shot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


TEXTS = ["The cat sat on the mat and purred quietly in the afternoon sun.",
         "A cat. Mat. Sun.",
         "The cat, having found the warm mat, settled down for a long and well-earned nap."]


def order_on_screen(page):
    return page.eval_on_selector_all(".rank-card", "cs => cs.map(c => Number(c.dataset.key))")


def test_a_person_ranks_with_the_keyboard_alone(page, live_server, user, transactional_db):
    batch = make_batch(user, k=3, items=1, texts=TEXTS)
    item = batch.items.get()
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/labeling/{batch.pk}/rank/")
    page.wait_for_selector(".rank-card")
    assert "0 of 1" in page.inner_text("#rank-progress-text")
    assert page.locator("#key-help kbd").count() >= 6  # the keys are shown

    page.keyboard.press("3")  # pick response 3 ...
    assert page.get_attribute('.rank-card[data-key="3"]', "aria-current") == "true"
    # at 1280 px the three cards stand in one row: left is toward best, up is a row up
    page.keyboard.press("ArrowUp")
    assert "already in the first row" in page.inner_text("#rank-message")
    assert order_on_screen(page) == [1, 2, 3]
    page.keyboard.press("ArrowLeft")  # ... move it before 2
    page.keyboard.press("ArrowLeft")  # ... and before 1: order 3, 1, 2
    assert order_on_screen(page) == [3, 1, 2]
    page.keyboard.press("2")
    page.keyboard.press("t")  # 2 is tied with the one above it (1)
    label = page.get_attribute('.rank-card[data-key="2"]', "aria-label")
    assert "rank 2" in label and "tied" in label
    shot(page, "rank-page")
    page.keyboard.press("Enter")
    page.wait_for_selector("#all-done")
    assert "All done" in page.inner_text("#all-done")
    # responses 1 and 2 share rank 2, response 3 is best
    assert Ranking.objects.get(item=item, annotator=user).ranks == [2, 2, 1]


def test_skip_undo_and_drag(page, live_server, user, transactional_db):
    batch = make_batch(user, k=3, items=2, texts=TEXTS)
    first, second = batch.items.order_by("index")
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/labeling/{batch.pk}/rank/")
    page.wait_for_selector(f'#rank-page[data-item-id="{first.pk}"]')
    page.keyboard.press("s")  # skip the first item
    page.wait_for_selector(f'#rank-page[data-item-id="{second.pk}"]')
    page.keyboard.press("Enter")  # the order as shown: the page asks first ...
    assert "not changed the order" in page.inner_text("#rank-message")
    assert not Ranking.objects.exists()
    page.keyboard.press("Enter")  # ... and a second Enter ranks it as shown: 1, 2, 3
    page.wait_for_selector(f'#rank-page[data-item-id="{first.pk}"]')  # the skipped comes back
    assert Ranking.objects.get(item=second).ranks == [1, 2, 3]
    page.keyboard.press("u")  # undo: the second item comes back
    page.wait_for_selector(f'#rank-page[data-item-id="{second.pk}"]')
    assert not Ranking.objects.exists()

    # drag response 3 onto the left half of response 1: order 3, 1, 2
    page.drag_and_drop('.rank-card[data-key="3"]', '.rank-card[data-key="1"]',
                       target_position={"x": 10, "y": 30})
    assert order_on_screen(page) == [3, 1, 2]
    page.click("#submit-ranking")
    page.wait_for_selector(f'#rank-page[data-item-id="{first.pk}"]')
    assert Ranking.objects.get(item=second).ranks == [2, 3, 1]
    assert response_ids(second.pk)  # the item kept its responses


def test_the_batch_page_reads_well(page, live_server, user, other_user, transactional_db):
    batch = make_batch(user, k=3, items=3, texts=TEXTS, shared=True, name="cat summaries")
    from webapp.labeling import services

    for i, it in enumerate(batch.items.order_by("index")):
        ids = response_ids(it.pk)
        services.ranking_record(item=it, annotator=user, ranking=[[x] for x in ids])
        if i < 2:
            services.ranking_record(item=it, annotator=other_user,
                                    ranking=[[ids[1]], [ids[0], ids[2]]])
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/labeling/{batch.pk}/")
    page.wait_for_selector("#agreement-table")
    assert page.locator("#agreement-table tbody tr").count() == 2
    assert page.inner_text("#batch-status") == "ready"
    shot(page, "batch-page")
    page.goto(f"{live_server.url}/labeling/")
    assert page.locator("#batch-table tbody tr").count() == 1
    shot(page, "list-page")


def test_on_a_phone_the_cards_stack_and_up_and_down_move_one_place(page, live_server, user,
                                                                   transactional_db):
    long_text = " ".join(["A long answer that goes on and on about the cat."] * 30)
    batch = make_batch(user, k=3, items=1, texts=[TEXTS[0], long_text, TEXTS[2]])
    page.set_viewport_size({"width": 390, "height": 800})
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/labeling/{batch.pk}/rank/")
    page.wait_for_selector(".rank-card")
    boxes = page.eval_on_selector_all(".rank-card",
                                      "cs => cs.map(c => c.getBoundingClientRect().x)")
    assert len(set(round(x) for x in boxes)) == 1  # one column
    # the long response's box grows with its text: nothing is hidden behind a scrollbar
    grown = page.eval_on_selector('.rank-card[data-key="2"] .response-text',
                                  "e => [e.scrollHeight, e.clientHeight]")
    assert grown[0] <= grown[1] + 1 and grown[1] > 300
    page.keyboard.press("3")
    page.keyboard.press("ArrowUp")  # a row up is one place up in a single column
    assert order_on_screen(page) == [1, 3, 2]
    page.keyboard.press("ArrowDown")
    assert order_on_screen(page) == [1, 2, 3]
    page.keyboard.press("1")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")  # the order was changed: no second question
    page.wait_for_selector("#all-done")
    assert Ranking.objects.get(item=batch.items.get()).ranks == [2, 1, 3]


def test_item_numbers_agree_on_the_ranking_page_the_batch_page_and_the_export(
        page, live_server, user, other_user, api, transactional_db):
    from webapp.labeling import services

    batch = make_batch(user, k=3, items=3, texts=TEXTS, shared=True)
    first, second, third = batch.items.order_by("index")
    for annotator in (user, other_user):  # two people rank the second item: agreement
        services.ranking_record(item=second, annotator=annotator,
                                ranking=[[x] for x in response_ids(second.pk)])
    services.ranking_record(item=first, annotator=user,
                            ranking=[[x] for x in response_ids(first.pk)])
    sign_in(page, live_server.url)
    page.goto(f"{live_server.url}/labeling/{batch.pk}/rank/")  # the next for alice: the third
    assert "item 3 of 3" in page.inner_text("#item-number")
    page.goto(f"{live_server.url}/labeling/{batch.pk}/")
    assert page.inner_text("#agreement-table tbody tr td:first-child") == "2"
    lines = api.get(f"/api/labeling/batches/{batch.pk}/export?format=rankings")
    numbers = sorted({json.loads(x)["item_number"] for x in b"".join(
        lines.streaming_content).decode().splitlines()})
    assert numbers == [1, 2]
