// The chat history: messages grouped by sender, day separators, a "new
// messages" line, actions on hover or focus (a menu on touch screens),
// reactions, thread summaries, pictures shown inline.
'use strict';

const GROUP_GAP_MS = 5 * 60 * 1000;
const QUICK_EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀'];

function messageEl(id) { return document.querySelector(`#log li[data-id="${CSS.escape(id)}"]`); }

function scrollDown() { const log = $('log'); log.scrollTop = log.scrollHeight; }

function onMessage(m, tempId) {
  S.lastSeq.set(m.room, Math.max(S.lastSeq.get(m.room) ?? 0, m.seq));
  if (m.thread_of) return onThreadReply(m, tempId);
  if (m.room !== S.current) {
    const room = S.rooms.get(m.room);
    if (room && (m.sender || SYSTEM).id !== S.user.id) { room.unread = (room.unread || 0) + 1; renderRooms(); }
    else if (!room) refreshRooms();
    return;
  }
  const pending = document.querySelector(`#log li[data-temp="${CSS.escape(tempId)}"]`);
  if (pending) pending.remove();
  renderMessage(m);
  regroup();
  if (m.sender) clearTyper(m.sender.id);
  scrollDown();
  markRead();
}

// "Today", "Yesterday", or the date.
function dayLabel(at) {
  const day = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const diff = Math.round((day(new Date()) - day(at)) / 86_400_000);
  if (diff === 0) return 'Today';
  if (diff === 1) return 'Yesterday';
  return at.toLocaleDateString(undefined, { weekday: 'long', month: 'long', day: 'numeric', year: 'numeric' });
}

// Day separators before each day's first message, and consecutive
// messages of one sender (within 5 minutes) shown as one group.
function regroup() {
  const log = $('log');
  for (const d of log.querySelectorAll('li.day')) d.remove();
  let prev = null;
  for (const li of log.querySelectorAll('li[data-seq]')) {
    const at = new Date(li.dataset.at);
    if (!prev || new Date(prev.dataset.at).toDateString() !== at.toDateString()) {
      const sep = document.createElement('li'); sep.className = 'day'; sep.setAttribute('role', 'separator');
      sep.textContent = dayLabel(at);
      li.before(sep);
      prev = null;
    }
    const cont = prev && prev.nextElementSibling === li && prev.dataset.sender === li.dataset.sender
      && at - new Date(prev.dataset.at) < GROUP_GAP_MS && !li.classList.contains('deleted');
    li.classList.toggle('cont', Boolean(cont));
    prev = li;
  }
}

// A line before the first of the `unread` newest messages from others.
function newMessagesLine(unread) {
  document.querySelector('#log li.new-line')?.remove();
  if (!unread) return;
  const others = [...document.querySelectorAll('#log li[data-seq]')].filter((li) => li.dataset.sender !== S.user.id);
  const first = others[Math.max(0, others.length - unread)];
  if (!first) return;
  const line = document.createElement('li'); line.className = 'new-line'; line.setAttribute('role', 'separator');
  line.textContent = 'New messages';
  first.before(line);
  regroup();
}

function renderMessage(m, where = 'bottom') {
  if (m.room !== S.current || m.thread_of) return;
  let li = messageEl(m.id);
  const fresh = !li;
  if (fresh) li = document.createElement('li');
  li._m = m;
  li.className = m.deleted_at ? 'deleted' : '';
  li.tabIndex = 0;
  Object.assign(li.dataset, { id: m.id, seq: m.seq, sender: (m.sender || SYSTEM).id, at: m.created_at });
  li.textContent = '';
  li.append(avatarEl(m.sender), messageBody(m));
  if (!m.deleted_at) li.append(actions(m));
  if (fresh) {
    const log = $('log');
    const later = [...log.querySelectorAll('li[data-seq]')].find((x) => Number(x.dataset.seq) > m.seq);
    if (where === 'top' || later) log.insertBefore(li, later || log.firstChild);
    else log.append(li);
  }
}

// Sender and time, the text (or what it replies to), attachments,
// reactions and the thread's summary.
function messageBody(m) {
  const body = document.createElement('div'); body.className = 'body';
  const head = document.createElement('div'); head.className = 'head';
  const sender = document.createElement('span'); sender.className = 'sender'; sender.textContent = who(m.sender);
  const meta = document.createElement('span'); meta.className = 'meta';
  const at = new Date(m.created_at);
  meta.textContent = at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) + (m.edited_at ? ' (edited)' : '');
  meta.title = at.toLocaleString();
  head.append(sender, meta);
  body.append(head);
  if (m.reply_to) {
    const q = document.createElement('div'); q.className = 'quote';
    const orig = messageEl(m.reply_to);
    q.textContent = orig ? `↪ ${orig._m ? who(orig._m.sender) : ''}: ${orig._m?.text ?? ''}` : '↪ an earlier message';
    body.append(q);
  }
  const text = document.createElement('div'); text.className = 'text';
  text.textContent = m.deleted_at ? 'message deleted' : m.text;
  // A picture sent as such says its name under it already.
  if (m.kind === 'image' && m.attachments.some((a) => a.name === m.text)) text.classList.add('caption');
  body.append(text);
  if (!m.deleted_at) {
    for (const a of m.attachments) body.append(attachmentEl(a));
    body.append(reactionsEl(m));
    if (m.thread?.count) {
      const t = document.createElement('button'); t.type = 'button'; t.className = 'thread-link';
      t.textContent = `${m.thread.count} ${m.thread.count === 1 ? 'reply' : 'replies'}`;
      t.onclick = () => openThread(m);
      body.append(t);
    }
  }
  return body;
}

// A picture uploaded here is shown (fetched with this tab's token); any
// other attachment is a link.
function attachmentEl(a) {
  const ours = /\/v1\/uploads\/[0-9a-f-]{36}$/.test(a.url);
  if (ours && a.type.startsWith('image/') && a.type !== 'image/svg+xml') {
    const img = document.createElement('img'); img.className = 'picture'; img.alt = a.name;
    fetch(a.url, { headers: { authorization: `Bearer ${S.token}` } })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.status))))
      .then((blob) => { img.src = URL.createObjectURL(blob); })
      .catch(() => { img.alt = `${a.name} (not available)`; });
    return img;
  }
  const link = document.createElement('a'); link.className = 'file'; link.rel = 'noopener';
  link.textContent = `📎 ${a.name}`;
  if (ours) {
    link.href = '#';
    link.onclick = async (e) => {
      e.preventDefault();
      const r = await fetch(a.url, { headers: { authorization: `Bearer ${S.token}` } });
      if (!r.ok) return notice('That file is not available');
      const url = URL.createObjectURL(await r.blob());
      Object.assign(document.createElement('a'), { href: url, download: a.name }).click();
    };
  } else link.href = a.url;
  return link;
}

function reactionsEl(m) {
  const box = document.createElement('div'); box.className = 'reactions';
  for (const [emoji, users] of Object.entries(m.reactions || {})) {
    const mine = users.includes(S.user.id);
    const b = document.createElement('button'); b.type = 'button'; b.className = 'reaction';
    b.textContent = `${emoji} ${users.length}`;
    b.setAttribute('aria-pressed', String(mine));
    b.setAttribute('aria-label', `${emoji} ${users.length}${mine ? ', yours' : ''}`);
    b.onclick = () => react(m, emoji, !mine);
    box.append(b);
  }
  return box;
}

function react(m, emoji, add) {
  return request(add ? 'reaction:add' : 'reaction:remove', { room: m.room, message_id: m.id, emoji })
    .catch((e) => notice(e.message));
}

function onReactions(d) {
  const li = messageEl(d.message_id) || document.querySelector(`#thread li[data-id="${CSS.escape(d.message_id)}"]`);
  if (!li || !li._m) return;
  li._m.reactions = d.reactions;
  li.querySelector('.reactions')?.replaceWith(reactionsEl(li._m));
}

// The actions on a message: shown on hover or focus; on a touch screen
// behind a "More" button.
function actions(m) {
  const bar = document.createElement('div'); bar.className = 'actions'; bar.setAttribute('role', 'toolbar');
  bar.setAttribute('aria-label', 'Message actions');
  const add = (label, text, fn) => {
    const b = document.createElement('button'); b.type = 'button'; b.textContent = text; b.title = label;
    b.setAttribute('aria-label', label); b.onclick = fn; bar.append(b);
  };
  const more = document.createElement('button'); more.type = 'button'; more.className = 'more';
  more.textContent = '⋯'; more.setAttribute('aria-label', 'More actions');
  more.onclick = () => bar.classList.toggle('open');
  add('Add reaction', '☺', (e) => emojiPicker(e.currentTarget, (emoji) => react(m, emoji, true)));
  add('Reply', '↩', () => {
    S.replyTo = m.id; $('replying').hidden = false;
    $('replying').querySelector('span').textContent = `Replying to ${who(m.sender)}`; $('message').focus();
  });
  if (!m.thread_of) add('Reply in thread', '🧵', () => openThread(m));
  const mine = m.sender && m.sender.id === S.user.id;
  if (mine) {
    add('Edit', '✎', () => {
      const text = prompt('Edit message', m.text);
      if (text && text !== m.text) request('message:edit', { room: m.room, id: m.id, text }).catch((e) => notice(e.message));
    });
  }
  add('Delete', '🗑', () => {
    if (confirm('Delete this message?')) request('message:delete', { room: m.room, id: m.id }).catch((e) => notice(e.message));
  });
  if (!mine && m.sender) {
    add('Report', '⚑', () => {
      const reason = prompt('Why report this message? (optional)');
      if (reason === null) return;
      request('message:flag', { room: m.room, id: m.id, reason: reason || undefined })
        .then(() => notice('Reported to the moderators')).catch((e) => notice(e.message));
    });
  }
  const wrap = document.createElement('div'); wrap.className = 'actions-wrap';
  wrap.append(more, bar);
  return wrap;
}

// A small grid of emoji next to `anchor`; `pick` gets the chosen one.
function emojiPicker(anchor, pick) {
  const box = $('emoji-picker'); box.textContent = '';
  for (const emoji of QUICK_EMOJI) {
    const b = document.createElement('button'); b.type = 'button'; b.textContent = emoji;
    b.setAttribute('aria-label', `React with ${emoji}`);
    b.onclick = () => { box.hidden = true; anchor.focus(); pick(emoji); };
    box.append(b);
  }
  const r = anchor.getBoundingClientRect();
  box.style.top = `${Math.max(8, r.top - 48 + window.scrollY)}px`;
  box.style.left = `${Math.max(8, Math.min(window.innerWidth - 300, r.left - 120))}px`;
  box.hidden = false;
  box.querySelector('button').focus();
}

function onDeleted(room, id) {
  const li = messageEl(id) || document.querySelector(`#thread li[data-id="${CSS.escape(id)}"]`);
  if (!li) return;
  li.classList.add('deleted'); li.querySelector('.text').textContent = 'message deleted';
  for (const x of li.querySelectorAll('.actions-wrap, .picture, .file, .reactions')) x.remove();
  if (li._m) li._m.deleted_at = new Date().toISOString();
  if (room === S.current) regroup();
}

function onRead(d) {
  if (d.room !== S.current) return;
  const li = messageEl(d.message_id);
  if (!li) return;
  let receipt = li.querySelector('.receipt');
  if (!receipt) { receipt = document.createElement('span'); receipt.className = 'meta receipt'; li.querySelector('.body').append(receipt); }
  const names = new Set((receipt.dataset.names || '').split('|').filter(Boolean)); names.add(who(d.user));
  receipt.dataset.names = [...names].join('|');
  receipt.textContent = `Read by ${[...names].join(', ')}`;
}

// Marks the newest message from someone else as read, once per message
// (or `seen`, a thread reply shown in the open thread).
function markRead(seen) {
  const room = S.current; if (!room || document.hidden) return;
  let id; let seq;
  if (seen?.seq) ({ id, seq } = seen);
  else {
    const others = [...document.querySelectorAll('#log li[data-seq]')].filter((li) => li.dataset.sender !== S.user.id);
    const last = others[others.length - 1]; if (!last) return;
    id = last.dataset.id; seq = Number(last.dataset.seq);
  }
  if ((S.readSent.get(room) ?? 0) >= seq) return;
  S.readSent.set(room, seq);
  request('message:read', { room, message_id: id }).catch(() => S.readSent.delete(room));
}
