"""Screenshots of each project's labeling page, taken by headless Chromium (Debian
``chromium`` + ``chromium-driver``, driven by selenium) against a running local stack.

It logs in through Label Studio's form as the stack's admin, opens the first task of each
project in the labeling view, waits until the task's images are drawn, and saves one PNG per
project (``<output>/local-<project-key>.png``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from rich.console import Console

from local_stack.procs import StackError
from local_stack.stack import Layout, PidRecord

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-extensions", "--disable-sync",
                  "--no-first-run", "--metrics-recording-only", "--mute-audio",
                  "--window-size=1440,1150", "--hide-scrollbars")
#: project title prefix -> file name
SHOTS = {"SAM2": "local-sam2-segmentation.png", "Dermatology": "local-derm-lesion-tracking.png"}


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None or not CHROMEDRIVER.exists():
        raise StackError("headless Chromium not found: install Debian `chromium` and "
                         "`chromium-driver` (`make system-packages`)", exit_code=2,
                         service="chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _wait(driver, condition, timeout: float, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(condition)
    except TimeoutException as exc:
        raise StackError(f"chromium: {what} did not appear within {timeout:.0f}s "
                         f"(page {driver.current_url})", service="chromium") from exc


def _images_drawn(driver) -> bool:
    """Every <img> of the labeling area has loaded pixels (the task's images are shown)."""
    return bool(driver.execute_script(
        "const imgs = [...document.querySelectorAll('.lsf-main-view img, [class*=Image] img, "
        "img[src*=\"resolve\"]')];"
        "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);"))


def take_screenshots(state_dir: Path, output: Path, *, console: Console,
                     timeout: float = 120) -> list[Path]:
    """One PNG per project of the running stack in ``state_dir``; the files written."""
    import httpx
    from selenium.webdriver.common.by import By

    layout = Layout(state_dir)
    if not layout.pid_file("label-studio").exists():
        raise StackError(f"no Label Studio running from {layout.root}: run `labelstack local "
                         "up` first", exit_code=2, service="label-studio")
    rec = PidRecord.load(layout.pid_file("label-studio"))
    if not rec.alive():
        raise StackError(f"Label Studio (pid {rec.pid}) is not running: run `labelstack local "
                         "up` first", exit_code=2, service="label-studio")
    creds = json.loads(layout.credentials.read_text())["label_studio"]
    headers = {"Authorization": f"Token {creds['token']}"}
    projects = httpx.get(f"{rec.url}/api/projects/", headers=headers, timeout=30
                         ).raise_for_status().json()["results"]
    output.mkdir(parents=True, exist_ok=True)
    written = []
    driver = _driver()
    try:
        driver.get(f"{rec.url}/user/login/")
        _wait(driver, lambda d: d.find_elements(By.NAME, "email"), timeout, "the login form")
        driver.find_element(By.NAME, "email").send_keys(creds["username"])
        driver.find_element(By.NAME, "password").send_keys(creds["password"])
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input"
                            "[type=submit]").click()
        _wait(driver, lambda d: "/user/login" not in d.current_url, timeout, "the home page")
        for prefix, name in SHOTS.items():
            project = next((p for p in projects if p["title"].startswith(prefix)), None)
            if project is None:
                console.print(f"[yellow]no project titled {prefix}...: skipped[/]")
                continue
            tasks = httpx.get(f"{rec.url}/api/tasks/", headers=headers, timeout=30,
                              params={"project": project["id"], "page_size": 1}
                              ).raise_for_status().json()["tasks"]
            if not tasks:
                raise StackError(f"project {project['title']!r} has no tasks to show",
                                 service="label-studio")
            console.print(f"opening {project['title']} (task {tasks[0]['id']})")
            driver.get(f"{rec.url}/projects/{project['id']}/data?task={tasks[0]['id']}")
            _wait(driver, _images_drawn, timeout, f"the images of {project['title']}")
            time.sleep(2)  # let the editor settle (fonts, toolbars, zoom-to-fit)
            path = output / name
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(driver.get_screenshot_as_png())
            tmp.replace(path)
            written.append(path)
    finally:
        driver.quit()
    return written
