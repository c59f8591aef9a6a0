"""``ocrexp ui`` in a real browser: the system's headless Chromium, driven by Selenium, opens the printed
runs page, one run (metrics, params, the confusion matrix artifact) and the comparison of two runs.

The store holds what users make: two ``ocrexp-train`` runs and a two-trial Optuna sweep. Every page
is saved as a PNG under ``test-artifacts/browser/`` (git-ignored) for a person, or CI, to look at;
a failing test saves the page it stopped on as ``failed.png``.

Nothing is downloaded: the browser and its driver are Debian's ``chromium`` and ``chromium-driver``,
named by path so that Selenium Manager never runs.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.project import REPO, Project
from tests.system_packages import CHROMEDRIVER, CHROMIUM, require_chromium
from tests.servers import assert_stops_cleanly

if TYPE_CHECKING:
    from mlflow.entities import Run

SCREENSHOTS = REPO / "test-artifacts" / "browser"
WAIT_S = 60  # generous: MLflow's JavaScript is several MB, and a busy CI machine is slow to run it


@pytest.fixture
def browser(request) -> Iterator[WebDriver]:
    """A headless Chromium session (Selenium with Debian's driver); screenshots go to ``SCREENSHOTS``."""
    require_chromium()
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: CI runs as root; --disable-dev-shm-usage: containers have a tiny /dev/shm.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1200"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    failed_before = request.session.testsfailed
    yield driver
    try:
        if request.session.testsfailed > failed_before:
            driver.save_screenshot(str(SCREENSHOTS / "failed.png"))
    finally:
        driver.quit()
        print(f"screenshots: {SCREENSHOTS}")


def visible(driver: WebDriver, xpath: str) -> WebElement:
    """The first element matching ``xpath`` once it is displayed (the UI renders after its API calls)."""
    return WebDriverWait(driver, WAIT_S).until(expected_conditions.visibility_of_element_located((By.XPATH, xpath)))


def wait_until(driver: WebDriver, condition, message: str):
    """``condition(driver)`` once it is truthy."""
    return WebDriverWait(driver, WAIT_S).until(condition, message)


def text_is(text: str) -> str:
    """XPath predicate: the element's text, its descendants' included, is ``text`` (ours hold no quotes)."""
    return f"normalize-space(.)='{text}'"


def row_of(element: WebElement) -> WebElement:
    """The row of the runs table (an ag-grid; ``row-id`` is the run id) that holds ``element``."""
    return element.find_element(By.XPATH, "./ancestor::*[contains(concat(' ', @class, ' '), ' ag-row ')][1]")


def texts_beside(driver: WebDriver, label: WebElement) -> list[str]:
    """The texts shown on the label's line to its right, left to right: a table row's values as the
    user reads them, whether the table is a <table> or the virtualised grids of the compare page."""
    # 'nearest' leaves a virtualised grid alone when the label is in its view: scrolling one of the
    # compare page's grids by script does not scroll its partner, and the rows would no longer line up.
    driver.execute_script("arguments[0].scrollIntoView({block: 'nearest'})", label)
    return driver.execute_script("""
        const box = arguments[0].getBoundingClientRect(), middle = (box.top + box.bottom) / 2;
        const seen = e => {  // on top at its own centre: not clipped away by a folded section
            const b = e.getBoundingClientRect(), top = document.elementFromPoint((b.left + b.right) / 2, middle);
            return top !== null && (top === e || e.contains(top) || top.contains(e));
        };
        return [...document.body.querySelectorAll('*')]
            .filter(e => e.children.length === 0 && e.textContent.trim())
            .map(e => [e, e.getBoundingClientRect()])
            .filter(([e, b]) => b.top <= middle && middle <= b.bottom && b.left >= box.right && seen(e))
            .sort((x, y) => x[1].left - y[1].left)
            .map(([e]) => e.textContent.trim());
    """, label)


def shoot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def train_two_runs_and_a_sweep(project: Project) -> dict[str, Run]:
    """Real runs alpha (seed 1) and beta (seed 2) and a two-trial sweep: run name -> MLflow run."""
    fast = ["debug=fast", "tracking.log_model=false"]
    project.run("ocrexp-train", *fast, "run_name=alpha", "seed=1")
    project.run("ocrexp-train", *fast, "run_name=beta", "seed=2")
    project.run("ocrexp-train", "-m", "hparams_search=cnn_optuna", *fast, "hydra.sweeper.n_trials=2",
                "hydra.sweeper.n_jobs=1")
    runs = {run.info.run_name: run for run in project.runs()}
    assert set(runs) >= {"alpha", "beta", "trial-0", "trial-1"}, sorted(runs)
    assert all(run.info.status == "FINISHED" for run in runs.values())
    return runs


def runs_page_lists_runs_and_the_sweep(driver: WebDriver, runs: dict[str, Run]) -> None:
    # The model-training views (their sidebar has the model registry), not the GenAI overview.
    visible(driver, f"//*[{text_is('Model registry')}]")
    visible(driver, f"//*[{text_is('Runs')}]")
    for name in ("alpha", "beta"):
        assert row_of(visible(driver, f"//a[{text_is(name)}]")).get_attribute("row-id") == runs[name].info.run_id
    (parent_id,) = {run.data.tags["mlflow.parentRunId"] for run in runs.values()
                    if "mlflow.parentRunId" in run.data.tags}
    sweep = next(name for name, run in runs.items() if run.info.run_id == parent_id)
    sweep_row = row_of(visible(driver, f"//a[{text_is(sweep)}]"))
    assert sweep_row.get_attribute("row-id") == parent_id
    sweep_row.find_element(By.TAG_NAME, "button").click()  # unfold the sweep: its trials are nested runs
    for trial in ("trial-0", "trial-1"):
        assert row_of(visible(driver, f"//a[{text_is(trial)}]")).get_attribute("row-id") == runs[trial].info.run_id
    shoot(driver, "1-runs")


def run_page_shows_metrics_params_and_confusion_matrix(driver: WebDriver, run: Run) -> None:
    wait_until(driver, lambda d: f"/runs/{run.info.run_id}" in d.current_url, "not on the run's page")
    visible(driver, f"//h2[{text_is(run.info.run_name)}]")
    metric = visible(driver, f"//*[@role='row'][.//a[{text_is('test_accuracy')}]]")
    name, shown = metric.text.split("\n")
    assert (name, float(shown)) == ("test_accuracy", run.data.metrics["test_accuracy"])  # in full on this page
    search = visible(driver, "//input[@placeholder='Search parameters']")
    search.send_keys("trainer.epochs")
    param = visible(driver, f"//*[@role='row'][.//*[{text_is('trainer.epochs')}]]")
    assert param.text.split("\n") == ["trainer.epochs", run.data.params["trainer.epochs"]]
    shoot(driver, "2-run-alpha")

    visible(driver, f"//*[@role='tab'][{text_is('Artifacts')}]").click()
    visible(driver, f"//*[{text_is('plots')}]").click()
    visible(driver, f"//*[{text_is('confusion_matrix.png')}]").click()
    image = visible(driver, "//img[@alt='plots/confusion_matrix.png']")
    size = wait_until(driver, lambda d: image.get_property("complete") and image.get_property("naturalWidth"),
                      "the confusion matrix image did not load")
    artifact = Path(urllib.parse.urlparse(run.info.artifact_uri).path) / "plots" / "confusion_matrix.png"
    with Image.open(artifact) as png:
        assert (size, image.get_property("naturalHeight")) == png.size
    shoot(driver, "3-run-alpha-confusion-matrix")


def compare_view_sets_runs_side_by_side(driver: WebDriver, runs: dict[str, Run]) -> None:
    for name in ("alpha", "beta"):
        row = row_of(visible(driver, f"//a[{text_is(name)}]"))
        row.find_element(By.CSS_SELECTOR, "input.ag-checkbox-input").click()
    visible(driver, f"//button[{text_is('Compare')}]").click()
    wait_until(driver, lambda d: "#/compare-runs?" in d.current_url, "Compare did not open the compare view")
    query = urllib.parse.parse_qs(urllib.parse.unquote(hash_query(driver.current_url)))
    experiment_id = runs["alpha"].info.experiment_id
    assert sorted(json.loads(query["runs"][0])) == sorted(runs[n].info.run_id for n in ("alpha", "beta"))
    assert json.loads(query["experiments"][0]) == [experiment_id]

    visible(driver, f"//*[{text_is('Comparing 2 Runs from 1 Experiment')}]")
    visible(driver, f"//*[{text_is('Visualizations')}]").click()  # fold the plot: the tables fit the shot
    visible(driver, "//button[@aria-label='Parameters - Show diff only']").click()
    ids = texts_beside(driver, visible(driver, f"//th[{text_is('Run ID:')}]"))
    by_run = {runs[name].info.run_id: runs[name] for name in ("alpha", "beta")}
    assert sorted(ids) == sorted(by_run), ids
    names = texts_beside(driver, visible(driver, f"//th[{text_is('Run Name:')}]"))
    assert names == [by_run[i].info.run_name for i in ids]
    seeds = texts_beside(driver, visible(driver, f"//th[{text_is('seed')}]"))
    assert seeds == [by_run[i].data.params["seed"] for i in ids]
    shown = texts_beside(driver, visible(driver, f"//a[{text_is('test_accuracy')}]"))
    expected = [by_run[i].data.metrics["test_accuracy"] for i in ids]
    assert [float(v) for v in shown] == pytest.approx(expected, abs=5e-4), shown  # rounded to 3 decimals here
    shoot(driver, "4-compare-alpha-beta")


def hash_query(url: str) -> str:
    """The query of a hash route: ``…/#/compare-runs?runs=…`` -> ``runs=…``."""
    return urllib.parse.urlparse(url).fragment.partition("?")[2]


@pytest.mark.slow
def test_mlflow_ui_in_chromium_shows_runs_a_run_with_its_confusion_matrix_and_a_comparison(project, start_ui,
                                                                                           browser):
    runs = train_two_runs_and_a_sweep(project)
    ui = start_ui(project)
    link = re.search(r"http://\S+/#/experiments/\d+/runs\S*", ui.first_line).group()

    # MLflow's assistant panel opens itself on a browser's first visit and takes a third of the page.
    browser.get(f"http://127.0.0.1:{ui.port}/health")
    browser.execute_script("localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')")

    browser.get(link)
    runs_page_lists_runs_and_the_sweep(browser, runs)
    visible(browser, f"//a[{text_is('alpha')}]").click()
    run_page_shows_metrics_params_and_confusion_matrix(browser, runs["alpha"])
    browser.get(link)
    compare_view_sets_runs_side_by_side(browser, runs)

    assert_stops_cleanly(ui.proc, signal.SIGTERM, ui.server_pid, ui.port)
