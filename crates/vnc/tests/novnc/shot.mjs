// The noVNC test's browser driver: headless Chromium (Debian's) opens the
// test page, waits for noVNC to connect and draw, screenshots its canvas,
// then presses Enter and clicks through noVNC. Then, for each line
// "W H X Y R G B" on stdin, waits until the canvas is W x H with colour
// (R,G,B) at (X,Y) and screenshots it again to OUT-N.png (N = 2, 3, ...).
// Usage: node shot.mjs URL OUT.png    (env KITE_NOVNC_MODULES: node_modules dir)
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const [url, out] = process.argv.slice(2);
const require = createRequire(join(process.env.KITE_NOVNC_MODULES, 'x.js'));
const { chromium } = require('playwright-core');

const profile = mkdtempSync(join(tmpdir(), 'kite-novnc-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.KITE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
    viewport: { width: 1024, height: 800 },
  });
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => console.error('page:', m.text()));
  await page.goto(url);
  await page.waitForFunction(() => window.kite && (window.kite.connected || window.kite.error), null, { timeout: 15000 });
  const state = await page.evaluate(() => window.kite);
  if (!state.connected) throw new Error('noVNC did not connect: ' + state.error);
  // Wait until the canvas holds the server's picture (its top-left bar is white).
  await page.waitForFunction(() => {
    const c = document.querySelector('#screen canvas');
    if (!c || c.width < 16) return false;
    const d = c.getContext('2d').getImageData(2, 2, 1, 1).data;
    return d[0] > 200 && d[1] > 200 && d[2] > 200;
  }, null, { timeout: 15000 });
  await page.locator('#screen canvas').screenshot({ path: out });
  const size = await page.evaluate(() => { const c = document.querySelector('#screen canvas'); return [c.width, c.height]; });
  await page.evaluate(() => window.rfb.sendKey(0xff0d, 'Enter'));
  const box = await page.locator('#screen canvas').boundingBox();
  await page.mouse.click(box.x + 30, box.y + 20);
  await page.waitForTimeout(300);
  console.log(JSON.stringify({ name: state.name, width: size[0], height: size[1] }));
  let n = 2;
  for await (const line of createInterface({ input: process.stdin })) {
    const [w, h, x, y, r, g, b] = line.trim().split(/\s+/).map(Number);
    await page.waitForFunction(([w, h, x, y, r, g, b]) => {
      const c = document.querySelector('#screen canvas');
      if (!c || c.width !== w || c.height !== h) return false;
      const d = c.getContext('2d').getImageData(x, y, 1, 1).data;
      return Math.abs(d[0] - r) < 3 && Math.abs(d[1] - g) < 3 && Math.abs(d[2] - b) < 3;
    }, [w, h, x, y, r, g, b], { timeout: 15000 });
    const path = out.replace(/\.png$/, `-${n}.png`);
    await page.locator('#screen canvas').screenshot({ path });
    console.log(JSON.stringify({ shot: path }));
    n += 1;
  }
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
