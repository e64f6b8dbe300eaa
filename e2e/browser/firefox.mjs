// Two users chat in Firefox (Debian's firefox-esr), driven over W3C
// WebDriver by geckodriver: one geckodriver, and so one browser, per user.
// Usage: node firefox.mjs <gateway url> <screenshot dir> <driver url> <driver url>
// Exits non-zero on the first failed expectation.
import { mkdirSync, writeFileSync } from 'node:fs';

const [url, out, annDriver, bobDriver] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const TIMEOUT = 15_000;
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

/** One browser session behind one geckodriver. */
class Session {
  static async open(driver, width, height) {
    const firefox = {
      binary: process.env.CHAT_FIREFOX || '/usr/bin/firefox-esr',
      args: ['-headless', `--width=${width}`, `--height=${height}`],
    };
    const r = await call(driver, 'POST', '/session', {
      capabilities: { alwaysMatch: { browserName: 'firefox', 'moz:firefoxOptions': firefox } },
    });
    const s = new Session(driver, r.sessionId);
    await s.call('POST', '/window/rect', { width, height });
    return s;
  }

  constructor(driver, id) { this.driver = driver; this.id = id; }
  call(method, path, body) { return call(this.driver, method, `/session/${this.id}${path}`, body); }
  goto(to) { return this.call('POST', '/url', { url: to }); }
  async find(css) { return (await this.call('POST', '/element', { using: 'css selector', value: css }))[ELEMENT]; }
  async type(css, text) { await this.call('POST', `/element/${await this.find(css)}/value`, { text }); }
  async click(css) { await this.call('POST', `/element/${await this.find(css)}/click`, {}); }
  async text(css) { return this.call('GET', `/element/${await this.find(css)}/text`); }
  async label(css) { return this.call('GET', `/element/${await this.find(css)}/computedlabel`); }
  async role(css) { return this.call('GET', `/element/${await this.find(css)}/computedrole`); }
  async rect(css) { return this.call('GET', `/element/${await this.find(css)}/rect`); }
  async shot(name) {
    const png = await this.call('GET', '/screenshot');
    writeFileSync(`${out}/${name}.png`, Buffer.from(png, 'base64'));
  }
  close() { return this.call('DELETE', ''); }

  /** Waits until the text of `css` matches `re`. */
  async waitText(css, re, what) {
    const deadline = Date.now() + TIMEOUT;
    let last = '';
    while (Date.now() < deadline) {
      try { last = await this.text(css); if (re.test(last)) return last; } catch { /* not there yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${what}: ${css} never matched ${re}; last text ${JSON.stringify(last)}`);
  }
}

async function call(driver, method, path, body) {
  const r = await fetch(`${driver}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json();
  if (!r.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value)}`);
  return json.value;
}

function expect(ok, what) { if (!ok) throw new Error(what); }

let ann;
let bob;
try {
  ann = await Session.open(annDriver, 1280, 800);
  // Bob's window is as narrow as Firefox allows (500 px; the Chromium test
  // covers a 390 px phone).
  bob = await Session.open(bobDriver, 500, 780);

  for (const [s, name] of [[ann, 'Ann'], [bob, 'Bob']]) {
    await s.goto(url);
    await s.type('#name', name);
    await s.click('#signin-form button[type=submit]');
    await s.waitText('#connection', /^connected$/, `${name} connects`);
    await s.type('#room-input', 'lobby');
    await s.click('#join-form button[type=submit]');
    await s.waitText('#room-title', /^lobby$/, `${name} opens the room`);
  }
  // The accessible names browser tests and screen readers rely on.
  expect(await ann.label('#message') === 'Message', 'the message box is labelled "Message"');
  expect(await ann.role('#log') === 'log', 'the history has role log');
  expect(await ann.label('#connection') === 'Connection', 'the status is labelled "Connection"');

  await ann.type('#message', 'hello from Firefox');
  await ann.click('#send-form button[type=submit]');
  await ann.waitText('#log', /Ann[\s\S]*hello from Firefox/, 'Ann sees her message');
  await bob.waitText('#log', /Ann[\s\S]*hello from Firefox/, 'Bob gets it');
  await ann.shot('firefox-01-message');

  // Typing reaches the other user only.
  await bob.type('#message', 'typing');
  await ann.waitText('#typing', /Bob is typing/, 'Ann sees Bob typing');
  expect(!/Bob is typing/.test(await bob.text('#typing')), 'the typer never sees their own indicator');

  // The narrow window keeps the message box and Send on screen.
  await bob.shot('firefox-02-narrow');
  const viewport = await bob.call('POST', '/execute/sync', { script: 'return window.innerWidth', args: [] });
  const box = await bob.rect('#send-form');
  expect(viewport <= 520, `a narrow viewport: ${viewport} px`);
  expect(box.x >= 0 && box.x + box.width <= viewport, `the send form fits ${viewport} px: ${JSON.stringify(box)}`);
  console.log('PASS');
} catch (err) {
  console.error(`FAIL: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  for (const s of [ann, bob]) {
    if (s) await s.close().catch(() => {});
  }
}
