// `npm run dashboard:screenshot`: opens the running dashboard in headless Chromium (Debian's
// /usr/bin/chromium through playwright-core; no browser download) and saves a PNG, e.g. during
// `npm run load`, for the README.
//
//   npm run dashboard:screenshot -- --url http://127.0.0.1:8080 --out docs/dashboard.png --wait 5
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { findProgram } from '../lib/programs.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080' },
    out: { type: 'string', default: 'docs/dashboard.png' },
    wait: { type: 'string', default: '5' },
  },
});
const executablePath = findProgram('chromium');
if (!executablePath) {
  console.error('chromium is not installed (apt-get install -y chromium)');
  process.exit(1);
}
const browser = await chromium.launch({
  executablePath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(values.url!);
  await page.locator('#connection[data-state="connected"]').waitFor({ timeout: 15_000 });
  await page.waitForTimeout(Number(values.wait) * 1000);
  await page.screenshot({ path: values.out!, fullPage: true });
  console.log(`saved ${values.out}`);
} finally {
  await browser.close();
}
