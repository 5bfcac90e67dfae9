// The live dashboard, as a person sees it: headless Chromium opens the page the gateway serves,
// the page connects to the broker over MQTT/WebSocket as the public viewer, and posting orders moves
// its counters and its ERP chart; a clicked order shows its timeline. A screenshot is saved under test-output/.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { devCredentials } from '../broker/dev-logins.js';
import type { RunningGateway } from '../gateway/nginx.js';
import { ROOT } from '../harness/process.js';
import { findProgram, requireProgram } from './support/programs.js';
import { postOrder, sampleOrder, startGatewayFor, startStack, type Stack } from '../harness/stack.js';

const skip = requireProgram('nginx') || requireProgram('chromium');

describe('dashboard', { skip }, () => {
  let stack: Stack;
  let gateway: RunningGateway;
  let browser: Browser;

  before(async () => {
    stack = await startStack({ stock: { 'wooden-train': 1000 } });
    // The page logs in as in production: the public viewer, which reads woodytoys/public/# only.
    gateway = await startGatewayFor(stack, { DASHBOARD_MQTT_USERNAME: 'viewer', DASHBOARD_MQTT_PASSWORD: devCredentials(stack.dataDir).viewer });
    browser = await chromium.launch({
      executablePath: findProgram('chromium'),
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await browser?.close();
    await gateway?.stop();
    await stack?.stop();
  });

  it('connects, then shows orders and ERP load change as orders flow', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(gateway.url);
    await page.locator('#connection[data-state="connected"]').waitFor({ timeout: 15_000 });

    const confirmed = page.locator('#order-counts dd[data-status="confirmed"]');
    const before = Number(await confirmed.textContent());
    for (let i = 0; i < 8; i++) assert.equal((await postOrder(gateway.url, sampleOrder(i))).status, 202);

    // The counters follow the orders to confirmed; the chart gets points with ERP load in them.
    await page.waitForFunction((n) => Number(document.querySelector('#order-counts dd[data-status="confirmed"]')?.textContent) >= n, before + 8, { timeout: 30_000 });
    await page.waitForFunction(() => Number(document.querySelector('#erp-chart')?.getAttribute('data-points')) > 0, undefined, { timeout: 15_000 });
    const latest = await page.locator('#latest-orders li').count();
    assert.ok(latest >= 1, 'the latest orders list shows orders');
    const levels = await page.locator('#stock li').count();
    assert.ok(levels >= 1, 'stock levels arrive from the retained topics');
    // Each worker's leases and pace, and each workflow's backlog, come from the retained stats topics.
    await page.locator('#workers tbody tr').first().waitFor({ timeout: 15_000 });
    await page.locator('#backlog tbody tr').first().waitFor({ timeout: 15_000 });
    assert.match((await page.locator('#backlog tbody').textContent()) ?? '', /order-workers/);

    // A confirmed order, clicked, shows its timeline: every hop from the accept to the outcome.
    await page.locator('#latest-orders li.confirmed button').first().click();
    await page.locator('#timeline[data-state="shown"]').waitFor({ timeout: 15_000 });
    const hops = await page.locator('#timeline-hops tbody tr').allTextContents();
    for (const hop of ['accept', 'outbox publish', 'stock reservation', 'wait in queue', 'wait for pace', 'erp attempt', 'outcome applied']) {
      assert.ok(hops.some((row) => row.includes(hop)), `the timeline shows "${hop}": ${hops.join(' | ')}`);
    }
    assert.deepEqual(errors, []);

    const dir = join(ROOT, 'test-output');
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: join(dir, 'dashboard.png'), fullPage: true });
  });
});
