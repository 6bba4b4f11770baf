// Drive the Dagster UI in headless Chromium: open the global asset graph, open the nightly job
// and click "Materialize all", follow the run until it ends, and keep a screenshot of each step.
//
//   PZ_UI_URL=http://127.0.0.1:3333 PZ_SCREENSHOTS=test-artifacts/ui node materialize_all.js
//
// Prints one JSON line: {"runId": ..., "status": "SUCCESS" | "FAILURE" | ..., "screenshots": [...]}.
// Uses Debian's Chromium (CHROMIUM, default /usr/bin/chromium) through playwright-core.

const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const BASE = process.env.PZ_UI_URL || "http://127.0.0.1:3000";
const SHOTS = process.env.PZ_SCREENSHOTS || "test-artifacts/ui";
const RUN_TIMEOUT_MS = Number(process.env.PZ_RUN_TIMEOUT_MS || 600000);
const shots = [];

async function shot(page, name) {
  const file = path.join(SHOTS, `${String(shots.length + 1).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  shots.push(file);
}

// The first visit shows "Join the Dagster community" until "Skip" is clicked.
async function skipWelcomeDialog(page) {
  const skip = page.getByRole("button", { name: /^skip$/i });
  for (let i = 0; i < 20; i++) {
    if (await skip.isVisible().catch(() => false)) {
      await skip.click();
      await skip.waitFor({ state: "hidden", timeout: 10000 }).catch(() => {});
      return true;
    }
    await page.waitForTimeout(500);
  }
  return false;
}

// A busy webserver may drop a request now and then: ask again, up to `tries` times.
async function graphql(page, query, variables, tries = 12) {
  for (let i = 1; ; i++) {
    try {
      const response = await page.request.post(`${BASE}/graphql`, { data: { query, variables } });
      return (await response.json()).data;
    } catch (error) {
      if (i >= tries) throw error;
      await page.waitForTimeout(5000);
    }
  }
}

async function newestRun(page) {
  const data = await graphql(page, `{ runsOrError(limit: 1) { ... on Runs { results { runId } } } }`);
  const runs = data.runsOrError.results;
  return runs.length ? runs[0].runId : null;
}

async function runStatus(page, runId) {
  const query = `query ($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }`;
  return (await graphql(page, query, { id: runId })).runOrError.status;
}

(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(require("os").tmpdir(), "pz-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1600, height: 1000 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  let result = { runId: null, status: null, screenshots: shots };
  try {
    await page.goto(`${BASE}/asset-groups`, { waitUntil: "domcontentloaded" });
    const materialize = page.locator("button", { hasText: /materialize/i }).first();
    await Promise.race([
      materialize.waitFor({ timeout: 120000 }),
      page.getByRole("button", { name: /^skip$/i }).waitFor({ timeout: 120000 }),
    ]);
    await shot(page, "first-visit");
    result.skippedWelcome = await skipWelcomeDialog(page);

    // The global asset graph (groups drawn collapsed): wait until they are drawn.
    await page.getByText("publish", { exact: true }).first().waitFor({ timeout: 120000 });
    await page.waitForTimeout(1500);
    await shot(page, "asset-graph");

    // The nightly job: its page draws the job's asset graph and materializes all of it.
    await page.getByText("Jobs", { exact: true }).first().click();
    await page.getByRole("link", { name: "nightly_refresh" }).first().click({ timeout: 60000 });
    const launch = page.locator("button", { hasText: /materialize all/i }).first();
    await launch.waitFor({ timeout: 120000 });
    await page.getByText("nightly_refresh").first().waitFor({ timeout: 60000 });
    await page.waitForTimeout(3000);
    await shot(page, "job-asset-graph");
    await launch.click();
    // The launch is a request the page is still making: wait for the run to exist.
    let runId = null;
    for (let i = 0; i < 120 && !runId; i++) {
      await page.waitForTimeout(1000);
      runId = await newestRun(page);
    }
    if (!runId) throw new Error("no run was launched 120 s after clicking Materialize all");
    result.runId = runId;
    await shot(page, "launched");

    await page.goto(`${BASE}/runs`, { waitUntil: "domcontentloaded" });
    await page.locator(`a[href*="/runs/${runId}"]`).first().waitFor({ timeout: 60000 });
    await shot(page, "runs");
    await page.goto(`${BASE}/runs/${runId}`, { waitUntil: "domcontentloaded" });

    const started = Date.now();
    let status = await runStatus(page, runId);
    let n = 0;
    while (!["SUCCESS", "FAILURE", "CANCELED"].includes(status)) {
      if (Date.now() - started > RUN_TIMEOUT_MS) break;
      await page.waitForTimeout(5000);
      if (n++ % 6 === 0) await shot(page, "run-progress");
      status = await runStatus(page, runId);
    }
    result.status = status;
    if (status === "SUCCESS") {
      // What a person sees: the run page says so.
      await page.reload({ waitUntil: "domcontentloaded" });
      await page.getByText("Success", { exact: true }).first().waitFor({ timeout: 60000 });
    }
    await page.waitForTimeout(2000);
    await shot(page, `run-${String(status).toLowerCase()}`);

    await page.goto(`${BASE}/asset-groups`, { waitUntil: "domcontentloaded" });
    await page.getByText("publish", { exact: true }).first().waitFor({ timeout: 60000 });
    await page.waitForTimeout(2000);
    await shot(page, "asset-graph-after-run");
  } catch (error) {
    result.error = String(error && error.stack ? error.stack : error);
    await shot(page, "error").catch(() => {});
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
  process.exit(result.error ? 1 : 0);
})();
