"""The operator console in a real headless Chromium (Debian's chromium and chromium-driver, driven
by Selenium) against a real replica: log in with the token, watch a queue's depth change as
tickets arrive, drain and undrain, finish a match, release a player. The page's figures are
checked against what the replica itself answers, so a console that shows stale or invented
numbers fails.

MMSERVER_CONSOLE_SCREENSHOT=path keeps the screenshot taken at the end (docs/console.png was
made that way); otherwise it stays in the test's temporary directory.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.live.conftest import need
from tests.process.harness import MMServer
from tests.redis_server import free_port
from tests.waiting import wait_until

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[test]'")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = pytest.mark.live

TOKEN = "console-test-token-0123456789abcdef"
CONFIG = """
[modes.duel]
team_size = 1
teams = 2
accept_timeout_s = 0
# A fixed window: tickets 1000 MMR apart never match, so they stay queued and the depth shows.
mmr_window = 100
mmr_window_growth_per_s = 0
mmr_window_max = 100
ticket_ttl_s = 300

[auth]
open = true          # loopback only: the test plays the game backend without keys

[servers]
token = "console-test-server-token-0123456789"
static = ["10.0.0.5:7777"]

[webhooks]
url = "http://127.0.0.1:{port}/hook"   # nothing listens: each event fails once and dead-letters
secret_file = "{secret}"
max_attempts = 1
timeout_s = 1
"""


@pytest.fixture
def replica(tmp_path):
    secret = tmp_path / "webhook.secret"
    secret.write_text("console-test-webhook-secret-0123456789\n")
    secret.chmod(0o600)
    (tmp_path / "mmserver.toml").write_text(CONFIG.format(port=free_port(), secret=secret))
    server = MMServer(tmp_path / "replica", env={"MMSERVER_CONFIG": str(tmp_path / "mmserver.toml"),
                                                 "MMSERVER_ADMIN_TOKEN": TOKEN,
                                                 "MMSERVER_TICK_INTERVAL_MS": "200"})
    try:
        yield server.start().wait_ready()
    finally:
        server.kill()


@pytest.fixture
def browser(tmp_path):
    tools = need("chromium", "chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = tools["chromium"]
    for argument in ("--headless=new", "--no-sandbox",  # root in a container: no setuid sandbox
                     "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1900",
                     f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(argument)
    # The driver named explicitly: Selenium Manager would otherwise try to download one.
    service = webdriver.ChromeService(executable_path=tools["chromedriver"], log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def text(driver, selector: str) -> str:
    # Read in one script call: the page rebuilds its table rows at every refresh, so a row
    # found by one WebDriver call can be gone (stale) by the next.
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : ''", selector)


def shown(driver, element_id: str) -> bool:
    return driver.find_element(By.ID, element_id).is_displayed()


def click_and_confirm(driver, element_id: str) -> str:
    driver.find_element(By.ID, element_id).click()
    alert = driver.switch_to.alert  # window.confirm: every action asks first
    question = alert.text
    alert.accept()
    return question


def create_ticket(replica: MMServer, player: str, mmr: int) -> dict:
    answer = replica.post("/v1/tickets", {"player_id": player, "mode": "duel", "mmr": mmr})
    assert answer.status == 201, answer.body
    return answer.json()


def test_console_logs_in_shows_live_figures_and_steers_the_replica(replica, browser, tmp_path):
    browser.get(replica.admin_url + "/console")
    assert shown(browser, "login") and not shown(browser, "console")

    # A wrong token is refused by the API itself and the page says so.
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.ID, "login-button").click()
    assert wait_until(lambda: shown(browser, "login-error"), 10)
    assert "refused" in text(browser, "#login-error")
    assert browser.execute_script("return sessionStorage.length") == 0

    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "login-button").click()
    assert wait_until(lambda: shown(browser, "console") and text(browser, "#state") == "running", 10)
    # The token lives in sessionStorage only: not in the URL, not in a cookie, not in the field.
    assert browser.execute_script("return sessionStorage.getItem('mmserver.adminToken')") == TOKEN
    assert TOKEN not in browser.current_url and browser.get_cookies() == []
    assert browser.find_element(By.ID, "token").get_attribute("value") == ""
    replica_id = replica.admin("/admin/status").json()["replica"]
    assert wait_until(lambda: text(browser, f'tr[data-replica="{replica_id}"]'), 10)

    # Queue depth follows tickets as they arrive (1000 MMR apart: none can match).
    queued = 'tr[data-mode="duel"] td.queued'
    assert wait_until(lambda: text(browser, queued) == "0", 10)
    for count, player in enumerate(["low", "mid", "high"], start=1):
        create_ticket(replica, player, 1000 * count)
        assert wait_until(lambda: text(browser, queued) == str(count), 10), text(browser, queued)
    assert replica.admin("/admin/status").json()["queues"]["duel"]["queued"] == 3
    # The tick reports why they wait: the console shows the blocked-by counts it read.
    assert wait_until(lambda: "mmr" in text(browser, 'tr[data-mode="duel"] td.blocked'), 10)

    # Drain: the replica stops taking tickets and reports not-ready; undrain reverses it.
    question = click_and_confirm(browser, "drain")
    assert "Drain" in question
    assert wait_until(lambda: text(browser, "#state") == "draining", 10)
    assert replica.get("/readyz").status == 503
    assert replica.post("/v1/tickets", {"player_id": "late", "mode": "duel", "mmr": 1000}).status == 503
    click_and_confirm(browser, "undrain")
    assert wait_until(lambda: text(browser, "#state") == "running", 10)
    assert replica.get("/readyz").status == 200

    # A match: a partner for "low" forms one, assigned to the static server.
    create_ticket(replica, "partner", 1010)
    assert wait_until(lambda: replica.admin("/admin/players/low").json()["ticket"]["status"] == "assigned", 10)
    match_id = replica.admin("/admin/players/low").json()["ticket"]["assignment"]["match_id"]
    assert wait_until(lambda: text(browser, 'tr[data-mode="duel"] td.assigned') == "2", 10)
    assert wait_until(lambda: text(browser, '#servers tr[data-state="busy"] td') == "1", 10)

    # The lookup finds the player's match...
    browser.find_element(By.ID, "lookup-id").send_keys("low")
    browser.find_element(By.ID, "lookup").click()
    assert wait_until(lambda: shown(browser, "finish-match"), 10)
    assert browser.find_element(By.ID, "finish-match").get_attribute("data-id") == match_id
    # ...and the list of running matches has it, with its server and players: finish it there.
    row = f'#matches tr[data-match="{match_id}"]'
    assert wait_until(lambda: "10.0.0.5:7777" in text(browser, row), 10)
    assert "low" in text(browser, row) and "partner" in text(browser, row)
    assert text(browser, "#matches-summary") == "1 running"
    # The screenshot for the docs: a busy moment (queued tickets, a running match).
    screenshot = tmp_path / "console.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("MMSERVER_CONSOLE_SCREENSHOT"):
        shutil.copyfile(screenshot, Path(os.environ["MMSERVER_CONSOLE_SCREENSHOT"]))
    for _attempt in range(5):
        try:
            browser.find_element(By.CSS_SELECTOR, row + " button.finish").click()
            break
        except StaleElementReferenceException:
            continue  # the 2 s refresh rebuilt the row between finding and clicking it
    alert = browser.switch_to.alert
    question = alert.text
    alert.accept()
    assert match_id in question
    assert wait_until(lambda: text(browser, row) == "" and text(browser, "#matches-summary") == "0 running", 10)
    assert wait_until(lambda: replica.admin(f"/admin/matches/{match_id}").json().get("state") != "assigned", 10)
    assert wait_until(lambda: text(browser, '#servers tr[data-state="free"] td') == "1", 10)
    assert wait_until(lambda: text(browser, 'tr[data-mode="duel"] td.finished') == "2", 10)

    # Release a queued player: its ticket is cancelled and the depth drops.
    lookup = browser.find_element(By.ID, "lookup-id")
    lookup.clear()
    lookup.send_keys("high")
    browser.find_element(By.ID, "lookup").click()
    assert wait_until(lambda: shown(browser, "release-player") and not shown(browser, "finish-match"), 10)
    click_and_confirm(browser, "release-player")
    assert wait_until(lambda: text(browser, queued) == "1", 10)
    assert replica.admin("/admin/players/high").status == 404

    # Webhook events of all this went nowhere: the dead letters the API lists, the page lists.
    def dead_letters_shown():
        total = replica.admin("/admin/webhooks/dead").json()["total"]
        rows = browser.execute_script("return document.querySelectorAll('#dead tbody tr').length")
        return total > 0 and text(browser, "#dead-summary").startswith(f"{total} dead letter") and rows == min(total, 20)

    assert wait_until(dead_letters_shown, 20), text(browser, "#dead-summary")
    assert "ticket." in text(browser, "#dead tbody")

    # Shut down: refused without a reason; with one, confirmed, the replica stops with exit 1
    # (the status its supervisor restarts), and the reason is the one typed.
    browser.find_element(By.ID, "shutdown").click()
    assert "reason" in text(browser, "#action-result")
    browser.find_element(By.ID, "shutdown-reason").send_keys("console test")
    question = click_and_confirm(browser, "shutdown")
    assert "console test" in question
    assert replica.wait(30) == 1
    assert "console test" in replica.output()

    # Logging out forgets the token.
    browser.find_element(By.ID, "logout").click()
    assert browser.execute_script("return sessionStorage.length") == 0
    assert shown(browser, "login")
