// Threads, search, uploads and moderation; then the client starts.
'use strict';

// ---- threads --------------------------------------------------------------

// Opens the thread panel of `root`: the root, its replies, a reply box.
async function openThread(root) {
  S.thread = root;
  $('thread').hidden = false;
  const box = $('thread-root'); box.textContent = '';
  box.append(avatarEl(root.sender), messageBody({ ...root, thread: null }));
  $('thread-log').textContent = '';
  try {
    const { messages } = await request('history:fetch', { room: root.room, thread_of: root.id, limit: 100 });
    if (S.thread !== root) return;
    for (const m of messages) threadReplyEl(m);
  } catch (e) { notice(e.message); }
  $('thread-message').focus();
}

function threadReplyEl(m) {
  if (document.querySelector(`#thread-log li[data-id="${CSS.escape(m.id)}"]`)) return;
  const li = document.createElement('li'); li._m = m; li.tabIndex = 0;
  Object.assign(li.dataset, { id: m.id, seq: m.seq });
  li.append(avatarEl(m.sender), messageBody(m), actions(m));
  $('thread-log').append(li);
  $('thread-log').scrollTop = $('thread-log').scrollHeight;
}

// A reply persisted: into the open panel, and counted on its root.
function onThreadReply(m, tempId) {
  document.querySelector(`#thread-log li[data-temp="${CSS.escape(tempId)}"]`)?.remove();
  if (S.thread?.id === m.thread_of) {
    threadReplyEl(m);
    if (m.room === S.current && m.sender?.id !== S.user.id) markRead(m);
  }
  const root = messageEl(m.thread_of);
  if (root?._m) {
    const t = root._m.thread || { count: 0 };
    root._m.thread = { count: t.count + 1, last_at: m.created_at };
    renderMessage(root._m);
    regroup();
  }
}

function closeThread() { S.thread = null; $('thread').hidden = true; }

$('close-thread').onclick = closeThread;
$('thread-form').onsubmit = async (e) => {
  e.preventDefault();
  const input = $('thread-message'); const text = input.value.trim(); const root = S.thread;
  if (!text || !root) return;
  input.value = '';
  try { await request('message:send', { room: root.room, text, thread_of: root.id, client_id: crypto.randomUUID?.() }); }
  catch (err) { input.value = text; notice(`Not sent: ${err.message}`); }
};

// ---- search ---------------------------------------------------------------

$('search-form').onsubmit = async (e) => {
  e.preventDefault();
  const q = $('search-input').value.trim(); const ul = $('results');
  if (!q) { ul.hidden = true; return; }
  const r = await fetch(`/v1/search?q=${encodeURIComponent(q)}`, { headers: { authorization: `Bearer ${S.token}` } });
  const j = await r.json();
  ul.textContent = ''; ul.hidden = false;
  if (!r.ok) { ul.append(Object.assign(document.createElement('li'), { textContent: j.message })); return; }
  if (!j.messages.length) { ul.append(Object.assign(document.createElement('li'), { textContent: 'Nothing found' })); return; }
  for (const m of j.messages) {
    const li = document.createElement('li');
    const b = document.createElement('button'); b.type = 'button';
    const where = document.createElement('span'); where.className = 'meta';
    where.textContent = `${roomLabel(S.rooms.get(m.room) || { id: m.room })} · ${who(m.sender)}`;
    const text = document.createElement('span'); text.textContent = m.text;
    b.append(where, text);
    b.onclick = () => openHit(m);
    li.append(b); ul.append(li);
  }
};

// Opens a search hit in its room (or its thread), marked and in view.
async function openHit(m) {
  $('results').hidden = true;
  if (m.thread_of) {
    await openRoom(m.room);
    const root = messageEl(m.thread_of);
    if (root?._m) await openThread(root._m);
    return;
  }
  await openRoom(m.room, m.seq);
  const li = messageEl(m.id);
  if (!li) return notice('That message is no longer there');
  li.classList.add('hit'); li.scrollIntoView({ block: 'center' }); li.focus();
  setTimeout(() => li.classList.remove('hit'), 4000);
}

// ---- uploads --------------------------------------------------------------

// Uploads a file and sends it to the open room as a message.
async function sendFile(file) {
  const room = S.current; if (!room) return notice('Join or pick a room first');
  const li = document.createElement('li'); li.className = 'pending';
  li.textContent = `Uploading ${file.name || 'a file'}…`;
  $('log').append(li); scrollDown();
  try {
    const name = file.name || 'pasted.png';
    const r = await fetch(`/v1/uploads?name=${encodeURIComponent(name)}`, {
      method: 'POST', body: file,
      headers: { authorization: `Bearer ${S.token}`, 'content-type': file.type || 'application/octet-stream' },
    });
    const up = await r.json();
    if (!r.ok) throw new Error(up.message);
    const kind = up.type.startsWith('image/') ? 'image' : 'file';
    const ack = await request('message:send', { room, text: up.name, kind, attachments: [up], client_id: crypto.randomUUID?.() });
    li.dataset.temp = ack.temp_id; li.textContent = `${up.name} sent`;
  } catch (e) {
    li.textContent = `${file.name || 'The file'} not sent: ${e.message}`;
  }
}

$('attach').onclick = () => $('file').click();
$('file').onchange = () => { for (const f of $('file').files) sendFile(f); $('file').value = ''; };
$('message').addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files || [])];
  if (!files.length) return;
  e.preventDefault();
  for (const f of files) sendFile(f);
});
$('room').addEventListener('dragover', (e) => { e.preventDefault(); $('room').classList.add('dropping'); });
$('room').addEventListener('dragleave', () => $('room').classList.remove('dropping'));
$('room').addEventListener('drop', (e) => {
  e.preventDefault(); $('room').classList.remove('dropping');
  for (const f of e.dataTransfer?.files || []) sendFile(f);
});

// ---- moderation -----------------------------------------------------------

// A member's menu for the room's owner and admins (others are refused by
// the server, and told so).
function manageMenu(u) {
  const box = document.createElement('details'); box.className = 'manage';
  const summary = document.createElement('summary'); summary.textContent = '⋯';
  summary.setAttribute('aria-label', `Manage ${who(u)}`);
  box.append(summary);
  const act = (label, type, extra = {}) => {
    const b = document.createElement('button'); b.type = 'button'; b.textContent = label;
    b.onclick = () => {
      box.open = false;
      request(type, { room: S.current, user: u.id, ...extra })
        .then(() => notice(`${label}: ${who(u)}`)).catch((e) => notice(e.message));
    };
    box.append(b);
  };
  act('Remove', 'room:remove');
  act('Ban for a day', 'room:ban', { until: new Date(Date.now() + 86_400_000).toISOString() });
  act('Ban', 'room:ban');
  act('Unban', 'room:unban');
  return box;
}

// ---- keyboard -------------------------------------------------------------

document.addEventListener('keydown', (e) => {
  if (e.key !== 'Escape') return;
  if (!$('emoji-picker').hidden) { $('emoji-picker').hidden = true; return; }
  if (!$('results').hidden) { $('results').hidden = true; return; }
  if (!$('thread').hidden) { closeThread(); $('message').focus(); }
});
document.addEventListener('click', (e) => {
  const picker = $('emoji-picker');
  if (!picker.hidden && !picker.contains(e.target) && !e.target.closest('.actions')) picker.hidden = true;
});

start();
