// Two users in two browser contexts use the web client served by a gateway.
// Usage: node chat.mjs <gateway url> <screenshot dir>
// Prints "RESTART" when the gateway may be restarted and waits for a line
// "RESTARTED" on stdin. Exits non-zero on the first failed expectation.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';

const [url, out] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const lines = createInterface({ input: process.stdin });
// The iterator buffers lines that arrive before they are asked for.
const input = lines[Symbol.asyncIterator]();
const nextLine = async () => (await input.next()).value;
// Asks the test to do something to the stack and waits until it is done.
async function ask(what, done) {
  console.log(what);
  if ((await nextLine()) !== done) throw new Error(`the test did not answer ${what} with ${done}`);
}
const TIMEOUT = 15_000;

const browser = await chromium.launch({
  executablePath: process.env.CHAT_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let step = 0;
const pages = {};
async function shot(page, name) {
  step += 1;
  await page.screenshot({ path: `${out}/${String(step).padStart(2, '0')}-${name}.png` });
}

// On a failure: what each tab showed and knew, on stderr and as a
// screenshot, so the failure explains itself.
async function describe() {
  for (const [name, page] of Object.entries(pages)) {
    if (page.isClosed()) continue;
    await page.screenshot({ path: `${out}/failed-${name}.png` });
    const state = await page.evaluate(() => ({
      connection: document.getElementById('connection').textContent,
      notice: document.getElementById('notice').textContent,
      rooms: [...document.querySelectorAll('#rooms button')].map((b) => b.textContent),
      online: [...S.online],
      user: S.user,
    }));
    console.error(`${name}: ${JSON.stringify(state)}`);
  }
}

try {
  // Two tabs of one browser, each its own guest; Bob's tab is phone-sized.
  const context = await browser.newContext();
  const ann = await context.newPage();
  const bob = await context.newPage();
  await bob.setViewportSize({ width: 390, height: 780 });
  Object.assign(pages, { ann, bob });
  for (const page of [ann, bob]) page.setDefaultTimeout(TIMEOUT);

  async function signIn(page, name) {
    await page.goto(url);
    await page.getByLabel('Name').fill(name);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('status', { name: 'Connection' }).filter({ hasText: /^connected$/ }).waitFor();
  }
  async function join(page, room) {
    await page.getByLabel('Room').fill(room);
    await page.getByRole('button', { name: 'Join', exact: true }).click();
    await page.getByRole('heading', { name: room }).waitFor();
  }
  const message = (page, text) => page.getByRole('log', { name: 'Chat history' }).getByRole('listitem').filter({ hasText: text });
  // A message's action, shown on hover.
  async function act(page, text, action) {
    const item = message(page, text).first();
    await item.hover();
    await item.getByRole('button', { name: action, exact: true }).click();
  }
  async function say(page, text) {
    await page.getByLabel('Message', { exact: true }).fill(text);
    await page.getByRole('button', { name: 'Send' }).click();
  }

  await signIn(ann, 'Ann');
  await signIn(bob, 'Bob');
  const ids = await Promise.all([ann, bob].map((p) => p.evaluate(() => S.user.id)));
  if (ids[0] === ids[1]) throw new Error('the second tab signed in as the first tab\'s user');
  await join(ann, 'lobby');
  await join(bob, 'lobby');
  await shot(ann, 'joined');

  // A message appears in both tabs, confirmed once persisted.
  await say(ann, 'hello Bob');
  await message(bob, 'hello Bob').filter({ hasText: 'Ann' }).waitFor();
  await message(ann, 'hello Bob').and(ann.locator('li:not(.pending)')).waitFor();
  await shot(bob, 'message-received');

  // Typing shows in the other tab, never in the typer's.
  await bob.getByLabel('Message', { exact: true }).pressSequentially('typing…');
  await ann.getByRole('status', { name: 'Typing' }).filter({ hasText: 'Bob is typing' }).waitFor();
  await shot(ann, 'typing-shown');
  await bob.waitForTimeout(500);
  const own = await bob.getByRole('status', { name: 'Typing' }).textContent();
  if (own.trim() !== '') throw new Error(`the typer sees their own typing: "${own}"`);
  await bob.getByLabel('Message', { exact: true }).fill('');

  // Bob has read Ann's message: Ann sees the receipt.
  await message(ann, 'hello Bob').filter({ hasText: 'Read by Bob' }).waitFor();
  await shot(ann, 'read-receipt');

  // Ann mentions Bob through the picker: "@Bo" offers him, a click
  // completes the name, and the message carries the mention.
  await ann.getByLabel('Message', { exact: true }).pressSequentially('@Bo');
  await ann.getByRole('listbox', { name: 'Mention a member' }).getByRole('button', { name: '@Bob' }).click();
  await ann.getByLabel('Message', { exact: true }).pressSequentially('see this');
  const typed = await ann.getByLabel('Message', { exact: true }).inputValue();
  if (typed !== '@Bob see this') throw new Error(`the mention picker made "${typed}"`);
  await ann.getByRole('button', { name: 'Send' }).click();
  await message(bob, '@Bob see this').waitFor();
  const mentions = await bob.evaluate(async () => {
    const r = await fetch('/v1/rooms/lobby/messages', { headers: { Authorization: `Bearer ${S.token}` } });
    const { messages } = await r.json();
    return messages.find((m) => m.text === '@Bob see this')?.mentions;
  });
  const bobId = await bob.evaluate(() => S.user.id);
  if (JSON.stringify(mentions) !== JSON.stringify([bobId])) throw new Error(`mentions stored: ${JSON.stringify(mentions)}`);
  await shot(bob, 'mention');

  // Bob reacts to Ann's message from the actions shown on hover; both
  // tabs show the reaction under it, with its count.
  await act(bob, 'hello Bob', 'Add reaction');
  await bob.getByRole('dialog', { name: 'Add a reaction' }).getByRole('button', { name: 'React with 👍' }).click();
  for (const page of [ann, bob]) await message(page, 'hello Bob').getByRole('button', { name: /^👍 1/ }).waitFor();
  await shot(ann, 'reaction');
  // Keyboard only: Ann tabs from the message to its 👍 (hers too now), and
  // to "Add reaction", whose picker takes Tab and Enter.
  await message(ann, 'hello Bob').first().focus();
  await ann.keyboard.press('Tab');
  await ann.keyboard.press('Enter');
  await message(bob, 'hello Bob').getByRole('button', { name: /^👍 2/ }).waitFor();
  await message(ann, 'hello Bob').first().focus();
  await ann.keyboard.press('Tab');
  await ann.keyboard.press('Tab');
  await ann.keyboard.press('Enter');
  await ann.keyboard.press('Tab');
  await ann.keyboard.press('Enter');
  await message(bob, 'hello Bob').getByRole('button', { name: /^❤️ 1/ }).waitFor();

  // A thread: Ann opens one on her message, Bob answers in it; Ann's panel
  // shows the reply and the message counts it.
  await act(ann, 'hello Bob', 'Reply in thread');
  await act(bob, 'hello Bob', 'Reply in thread');
  await bob.getByLabel('Thread reply', { exact: true }).fill('an answer in the thread');
  await bob.getByRole('button', { name: 'Send reply' }).click();
  await ann.getByRole('log', { name: 'Thread replies' }).getByText('an answer in the thread').waitFor();
  await message(ann, 'hello Bob').getByRole('button', { name: '1 reply' }).waitFor();
  const inMain = await message(ann, 'an answer in the thread').count();
  if (inMain) throw new Error('a thread reply shows in the room\'s history');
  await shot(ann, 'thread');
  await ann.getByRole('button', { name: 'Close thread' }).click();
  await bob.getByRole('button', { name: 'Close thread' }).click();

  // Ann pastes a picture into the message box: it is uploaded, sent, and
  // shown in Bob's tab.
  await ann.getByLabel('Message', { exact: true }).evaluate(async (input) => {
    const canvas = Object.assign(document.createElement('canvas'), { width: 160, height: 90 });
    const g = canvas.getContext('2d');
    g.fillStyle = '#2b6cb0'; g.fillRect(0, 0, 160, 90);
    g.fillStyle = '#fff'; g.font = '28px sans-serif'; g.fillText('pasted', 30, 55);
    const blob = await new Promise((done) => canvas.toBlob(done, 'image/png'));
    const data = new DataTransfer();
    data.items.add(new File([blob], 'pasted.png', { type: 'image/png' }));
    input.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
  });
  const picture = bob.getByRole('log', { name: 'Chat history' }).getByRole('img', { name: 'pasted.png' });
  await picture.waitFor();
  await bob.waitForFunction(() => [...document.querySelectorAll('#log img.picture')].some((i) => i.naturalWidth === 160));
  await picture.scrollIntoViewIfNeeded();
  await shot(bob, 'picture-pasted');

  // Ann mutes the lobby, and unmutes it.
  await ann.getByRole('button', { name: 'Mute', exact: true }).click();
  await ann.getByRole('button', { name: 'Unmute' }).waitFor();
  await ann.getByRole('button', { name: 'Unmute' }).click();
  await ann.getByRole('button', { name: 'Mute', exact: true }).waitFor();

  // Ann starts a direct room with Bob: her room list shows it by his name
  // with his presence at once, even while the room is not stored yet (the
  // persister is stopped). Then she goes back to the lobby.
  await ask('PAUSE PERSISTER', 'PAUSED');
  await ann.getByRole('button', { name: 'Direct chat with Bob' }).click();
  const chats = ann.getByRole('navigation', { name: 'Your chats' });
  const direct = chats.getByRole('button', { name: /@Bob/ });
  await direct.getByRole('img', { name: 'online' }).waitFor();
  await shot(ann, 'direct-room-online');
  await ask('RESUME PERSISTER', 'RESUMED');
  // Once stored, Bob has it too, named after Ann.
  await bob.getByRole('navigation', { name: 'Your chats' }).getByRole('button', { name: /@Ann/ }).waitFor();
  await chats.getByRole('button', { name: 'lobby', exact: true }).click();
  await ann.getByRole('heading', { name: 'lobby' }).waitFor();

  // Bob, in the direct room, misses a message in the lobby: when he opens
  // it, a line marks where the new messages start.
  const bobChats = bob.getByRole('navigation', { name: 'Your chats' });
  await bobChats.getByRole('button', { name: /@Ann/ }).click();
  await bob.getByRole('heading', { name: '@Ann' }).waitFor();
  await say(ann, 'while you were in the direct room');
  await bobChats.getByRole('button', { name: /^lobby.*1 unread/ }).click();
  await bob.getByRole('separator').filter({ hasText: 'New messages' }).waitFor();
  const after = await bob.evaluate(() => document.querySelector('#log li.new-line').nextElementSibling.textContent);
  if (!after.includes('while you were in the direct room')) throw new Error(`the new-messages line stands before "${after}"`);
  await shot(bob, 'new-messages-line');

  // Back in the direct room, Bob searches for Ann's greeting: the hit
  // opens the lobby with the message marked.
  await bobChats.getByRole('button', { name: /@Ann/ }).click();
  await bob.getByRole('heading', { name: '@Ann' }).waitFor();
  await bob.getByLabel('Search messages').fill('hello');
  await bob.getByLabel('Search messages').press('Enter');
  await bob.getByRole('list', { name: 'Search results' }).getByRole('button', { name: /hello Bob/ }).click();
  await bob.getByRole('heading', { name: 'lobby' }).waitFor();
  await bob.locator('#log li.hit').filter({ hasText: 'hello Bob' }).waitFor();
  await shot(bob, 'search-hit');

  // After a reload the history is there.
  await say(bob, 'before the reload');
  await message(ann, 'before the reload').waitFor();
  await bob.reload();
  await bob.getByRole('status', { name: 'Connection' }).filter({ hasText: /^connected$/ }).waitFor();
  await message(bob, 'hello Bob').waitFor();
  await message(bob, 'before the reload').waitFor();
  await shot(bob, 'after-reload');

  // The gateway restarts; both tabs reconnect by themselves and show what
  // was said meanwhile.
  // The reconnecting state is seen unless the restart was quicker than
  // this look; what proves the reconnect is the message that only a
  // catch-up can bring.
  const down = ann.getByRole('status', { name: 'Connection' }).filter({ hasText: 'reconnecting' })
    .waitFor({ timeout: 5_000 }).then(() => shot(ann, 'reconnecting'), () => {});
  await ask('RESTART', 'RESTARTED');
  await down;
  for (const page of [ann, bob]) {
    await page.getByRole('status', { name: 'Connection' }).filter({ hasText: /^connected$/ }).waitFor({ timeout: 30_000 });
    await message(page, 'said while you were away').waitFor();
  }
  await shot(ann, 'caught-up');
  await shot(bob, 'caught-up-phone');
  // Presence is told afresh on every connection: Bob is online again.
  await direct.getByRole('img', { name: 'online' }).waitFor();

  // When Bob's tab closes, the dot of Ann's direct room with him turns to
  // offline.
  await bob.close();
  await direct.getByRole('img', { name: 'offline' }).waitFor({ timeout: 30_000 });
  await shot(ann, 'direct-room-offline');

  // The dark theme follows the system's setting.
  await ann.emulateMedia({ colorScheme: 'dark' });
  const background = await ann.evaluate(() => getComputedStyle(document.body).backgroundColor);
  if (background !== 'rgb(21, 25, 30)') throw new Error(`the dark theme's background is ${background}`);
  await shot(ann, 'dark-theme');
  await ann.emulateMedia({ colorScheme: 'light' });

  // Signing out forgets this tab's guest.
  await ann.getByRole('button', { name: 'Sign out' }).click();
  await ann.getByRole('button', { name: 'Sign in' }).waitFor();
  const kept = await ann.evaluate(() => sessionStorage.getItem('chat.token'));
  if (kept) throw new Error('the token outlived the sign-out');
  console.log('PASS');
} catch (err) {
  console.error(`FAIL: ${err.stack || err}`);
  process.exitCode = 1;
  await describe().catch((e) => console.error(`no description of the pages: ${e}`));
} finally {
  await browser.close();
  lines.close();
}
