// SPDX-License-Identifier: Apache-2.0
// dashboard.mjs — drives the real dashboard in Debian's Chromium with playwright-core, against a real nexd.
//
// Usage: node tests/browser/dashboard.mjs BASE_URL ARTIFACT_PATH OUT_DIR TOKEN IMAGE_REF RELEASE_URL
//   [CLUSTER_BASE_URL CLUSTER_TOKEN]
// (IMAGE_REF: an image whose blobs its registry holds back until RELEASE_URL is fetched; the second node, when
// given, is in a cluster and runs a workload named `clustered`: the Cluster page's check)
// Prints one JSON line per check ({"check": name, "ok": bool, "detail": ...}) and exits non-zero when a check
// failed; tests/integration/test_dashboard.py runs it and turns each line into a pytest result.  Screenshots of the
// main views go to OUT_DIR.  axe-core (from npm) checks accessibility of every view.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const [base, artifact, outDir, token, imageRef, releaseUrl, clusterBase, clusterToken] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
let failed = 0;

function report(check, ok, detail) {
  if (!ok) failed++;
  console.log(JSON.stringify({ check, ok: !!ok, detail: detail === undefined ? null : detail }));
}

async function step(check, fn) {
  try {
    const detail = await fn();
    report(check, true, detail);
  } catch (e) {
    report(check, false, String(e && e.stack || e).slice(0, 2000));
  }
}

async function axe(page, view) {
  await page.addScriptTag({ content: axeSource });
  const r = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }));
  const v = r.violations.map((x) => `${x.id}: ${x.help} at ${x.nodes.map((n) => n.target.join(' ') + (n.failureSummary ? ` [${n.failureSummary.replace(/\s+/g, ' ').slice(0, 160)}]` : '')).join(', ')}`);
  if (v.length) throw new Error(`${view}: ${v.join('; ')}`);
  return `${view}: no violations`;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
const page = await context.newPage();
const consoleErrors = [];
// The browser logs every HTTP error status of a fetch as a console error; the API's 4xx answers to requests the
// test makes on purpose (a bad deploy) are expected and shown by the page, so those are not counted.
page.on('console', (m) => {
  if (m.type() !== 'error') return;
  if (/Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) return;
  consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));
page.setDefaultTimeout(20000);

await step('asks for a token, refuses a wrong one, accepts a good one', async () => {
  await page.goto(base + '/');
  await page.locator('#token-dialog[open]').waitFor();
  await page.fill('#token-input', 'nex_0000000000000000_not-a-token');
  await page.click('#token-form button[type=submit]');
  await page.locator('#token-error').filter({ hasText: /not accepted/ }).waitFor();
  await page.fill('#token-input', token);
  await page.click('#token-form button[type=submit]');
  await page.waitForFunction(() => !document.querySelector('#token-dialog').open);
});
await step('overview loads with node id', async () => {
  await page.goto(base + '/');
  await page.getByTestId('node-id').waitFor();
  const id = await page.getByTestId('node-id').textContent();
  await page.locator('#scope').filter({ hasText: /admin/ }).waitFor();
  const cpus = await page.getByTestId('cpus').textContent();
  if (!/^[1-9]\d*$/.test(cpus)) throw new Error(`CPU count looks wrong: ${cpus}`);
  if (!/^[0-9a-f-]{36}$|^N[A-Z0-9]{55}$/.test(id)) throw new Error(`node id looks wrong: ${id}`);
  await page.screenshot({ path: `${outDir}/overview.png`, fullPage: true });
  return id;
});
await step('live indicator connects', async () => {
  await page.locator('#live.on').waitFor({ timeout: 10000 });
});
await step('accessibility: overview', () => axe(page, 'overview'));

await step('bad deploy shows the API error next to the field', async () => {
  await page.goto(base + '/#/deploy');
  await page.fill('#f-name', 'bad-one');
  await page.fill('#f-artifact', 'file:///etc/passwd');
  await page.click('button[type=submit]');
  const err = page.locator('[data-error-for="artifact"]');
  await err.filter({ hasText: /ELF/ }).waitFor();
  await page.screenshot({ path: `${outDir}/deploy-error.png`, fullPage: true });
  return await err.textContent();
});
await step('client-side validation refuses a bad name before sending', async () => {
  await page.fill('#f-name', 'no spaces allowed');
  await page.click('button[type=submit]');
  await page.locator('[data-error-for="name"]').filter({ hasText: /letters/ }).waitFor();
});
await step('accessibility: deploy form', () => axe(page, 'deploy'));

let workloadId = null;
await step('deploy through the form and see it in the table turn running without reloading', async () => {
  await page.goto(base + '/#/workloads');
  await page.goto(base + '/#/deploy');
  await page.getByTestId('example').click();
  if ((await page.inputValue('#f-artifact')) !== `file://${artifact}`) throw new Error('the example names another artifact');
  await page.fill('#f-name', 'ui-ticker');
  await page.fill('#f-argv', 'sh\n-c\nwhile true; do echo tick $((i=i+1)); sleep 0.3; done');
  await page.click('button[type=submit]');
  await page.waitForURL(/#\/workloads\/[0-9a-f-]{36}$/);
  workloadId = page.url().split('/').pop();
  await page.click('a[data-nav=workloads]'); // a hash change, not a reload
  const row = page.locator(`tr[data-id="${workloadId}"]`);
  await row.locator('.badge.running').waitFor();
  // its memory use, from the workload's stats
  await row.locator('td[data-col=memory]').filter({ hasText: /\d+(\.\d)? (B|KiB|MiB)$/ }).waitFor();
  await page.screenshot({ path: `${outDir}/workloads.png`, fullPage: true });
  return workloadId;
});
await step('accessibility: workloads table', () => axe(page, 'workloads'));

await step('detail shows log lines arriving live', async () => {
  await page.locator(`tr[data-id="${workloadId}"] a`).click();
  const logs = page.getByTestId('logs');
  await logs.locator('.line', { hasText: 'tick' }).first().waitFor();
  const n1 = await logs.locator('.line').count();
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid=logs] .line').length > n + 2, n1, { timeout: 10000 });
  await page.screenshot({ path: `${outDir}/detail.png`, fullPage: true });
  return `${n1} lines, then more`;
});

await step('exec terminal runs echo hi', async () => {
  const term = page.getByTestId('terminal');
  await term.locator('.xterm').waitFor();
  await term.click();
  await page.keyboard.type('echo hi');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid=terminal] .xterm-rows > div')].map((d) => d.textContent.trim());
    return rows.some((r) => r === 'hi');
  }, null, { timeout: 15000 });
  await page.screenshot({ path: `${outDir}/terminal.png`, fullPage: true });
});
await step('accessibility: workload detail', () => axe(page, 'detail'));

await step('stop with confirmation and see the state change', async () => {
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.locator('#confirm-ok').click();
  await page.getByTestId('state').filter({ hasText: 'stopped' }).waitFor({ timeout: 20000 });
});

await step('detail shows a bridge workload\'s address, ports as links and egress; redeploy keeps them', async () => {
  const r = await fetch(`${base}/v1/workloads`, {
    method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'ui-net', artifact: `file://${artifact}`, argv: ['sleep', '600'], network: 'bridge',
      ports: [{ host: 0, workload: 80 }, { host: 0, workload: 53, protocol: 'udp' }], egress: { deny: ['192.0.2.0/24'] } }),
  });
  const w = await r.json();
  if (r.status !== 202) throw new Error(`deploy answered ${r.status}: ${JSON.stringify(w)}`);
  let again = null;
  try {
    await page.goto(`${base}/#/workloads/${w.id}`);
    await page.getByTestId('address').filter({ hasText: w.address }).waitFor();
    const link = page.getByTestId('ports').locator('a');
    if ((await link.count()) !== 1) throw new Error(`${await link.count()} links for one tcp port on 127.0.0.1`);
    const href = await link.getAttribute('href');
    if (href !== `http://127.0.0.1:${w.ports[0].host}/`) throw new Error(`port link ${href}`);
    if (!(await page.getByTestId('ports').textContent()).includes(`${w.ports[1].host} → 53/udp`)) throw new Error('no udp port');
    const egress = await page.getByTestId('egress').textContent();
    if (egress !== 'deny 192.0.2.0/24; otherwise allow') throw new Error(`egress shown as ${egress}`);
    await page.screenshot({ path: `${outDir}/detail-network.png`, fullPage: true });
    // Redeploy keeps the network: bridge, the same egress, the ports on free host ports (these are still taken).
    await page.getByRole('button', { name: 'Restart (redeploy)' }).click();
    await page.locator('#confirm-ok').click();
    await page.waitForURL((u) => /#\/workloads\/[0-9a-f-]{36}$/.test(u.hash) && !u.hash.endsWith(w.id));
    again = page.url().split('/').pop();
    await page.getByTestId('address').filter({ hasText: /^10\./ }).waitFor();
    if (!(await page.getByTestId('ports').textContent()).includes('→ 53/udp')) throw new Error('the redeploy lost its ports');
    if ((await page.getByTestId('egress').textContent()) !== egress) throw new Error('the redeploy lost its egress');
    return `${w.address}, ${href}; redeployed as ${again}`;
  } finally {
    // Off their page first: a page whose workload stops while its terminal opens would see the session refused.
    await page.goto(base + '/#/workloads');
    for (const x of [w.id, again].filter(Boolean))
      await fetch(`${base}/v1/workloads/${x}?grace_s=0`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
  }
});

await step('events feed shows what happened', async () => {
  await page.click('a[data-nav=events]');
  await page.locator('.events li', { hasText: 'workload_stopped' }).first().waitFor();
  await page.screenshot({ path: `${outDir}/events.png`, fullPage: true });
});
await step('accessibility: events', () => axe(page, 'events'));

await step('dark theme and a phone-sized screen', async () => {
  await page.click('#theme');
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(base + '/#/workloads');
  await page.locator('table').waitFor();
  await page.screenshot({ path: `${outDir}/phone-dark.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 2) throw new Error(`page is ${overflow}px wider than the phone screen`);
});
await step('accessibility: dark theme', () => axe(page, 'dark workloads'));

await step('deploy an image and see its pull progress', async () => {
  await page.goto(base + '/#/deploy');
  await page.fill('#f-name', 'ui-image');
  await page.fill('#f-image', imageRef);
  // Runs two seconds: its terminal (a shell from the image's PATH) opens, then it ends by itself.
  await page.fill('#f-argv', 'sh\n-c\necho from the image; sleep 2');
  await page.click('button[type=submit]');
  await page.waitForURL(/#\/workloads\/[0-9a-f-]{36}$/);
  const bar = page.getByTestId('pull-progress');
  await bar.waitFor({ timeout: 10000 }); // the pull is held: the bar must be there
  await fetch(releaseUrl);
  await page.getByTestId('state').filter({ hasText: 'exited' }).waitFor({ timeout: 30000 });
  if (await bar.count()) throw new Error('the pull bar stayed after the pull');
  await page.locator('#logs-h').waitFor();
  return await page.getByTestId('image').textContent();
});

await step('keyboard navigation reaches the sections', async () => {
  await page.setViewportSize({ width: 1280, height: 860 });
  await page.goto(base + '/');
  const seen = [];
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press('Tab');
    seen.push(await page.evaluate(() => document.activeElement && document.activeElement.textContent.trim()));
  }
  for (const want of ['Workloads', 'Deploy', 'Events']) if (!seen.includes(want)) throw new Error(`Tab never reached ${want}: ${seen}`);
});

await step('cluster page without NATS says how to join', async () => {
  await page.goto(base + '/');
  await page.click('a[data-nav=cluster]');
  await page.locator('main h1', { hasText: 'Cluster' }).waitFor();
  await page.locator('main [role=status]', { hasText: '--nats' }).waitFor();
});

if (clusterBase) {
  await step("cluster page lists the nodes and every node's workloads", async () => {
    await page.goto(clusterBase + '/#/cluster');
    await page.locator('#token-dialog[open]').waitFor();
    await page.fill('#token-input', clusterToken);
    await page.click('#token-form button[type=submit]');
    const self = page.locator('tr[data-node]', { hasText: '(this node)' });
    await self.waitFor();
    for (const want of ['alive', 'zone=web']) {
      if (!(await self.textContent()).includes(want)) throw new Error(`the node's row lacks ${want}: ${await self.textContent()}`);
    }
    const row = page.locator('table[aria-label="Workloads on every node"] tr', { hasText: 'clustered' });
    await row.waitFor();
    await row.locator('a').click();
    await page.locator('main h1', { hasText: 'clustered' }).waitFor();
    await page.goBack();
    await page.locator('tr[data-node]').first().waitFor();
    await page.screenshot({ path: `${outDir}/cluster.png`, fullPage: true });
  });
  await step('accessibility: cluster', () => axe(page, 'cluster'));
}

report('no console errors', consoleErrors.length === 0, consoleErrors.slice(0, 10));
await browser.close();
process.exit(failed ? 1 : 0);
