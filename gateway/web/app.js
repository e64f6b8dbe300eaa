// The chat web client: plain JavaScript over the gateway's WebSocket and
// REST API (docs/protocol.md). No build step; the gateway embeds this file.
'use strict';

const $ = (id) => document.getElementById(id);
// A user named by id who never connected has no name yet.
// A system message (from the application itself) has no sender.
const SYSTEM = { id: '', name: 'System', avatar_url: null };
const who = (u) => (u || SYSTEM).name || `User ${String(u.id).slice(0, 8)}`;
// A user's picture, or their initials on a colour of their own.
function avatarEl(u) {
  u = u || SYSTEM;
  if (u.avatar_url && /^https?:\/\//.test(u.avatar_url)) {
    const img = document.createElement('img'); img.className = 'avatar'; img.alt = '';
    img.src = u.avatar_url; img.referrerPolicy = 'no-referrer';
    return img;
  }
  const span = document.createElement('span'); span.className = 'avatar initials'; span.setAttribute('aria-hidden', 'true');
  span.textContent = who(u).split(/\s+/).filter(Boolean).slice(0, 2).map((w) => [...w][0]).join('').toUpperCase();
  const hue = [...String(u.id)].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);
  span.style.background = `hsl(${hue} 55% 45%)`;
  return span;
}
const S = {
  token: null, user: null, ws: null, nextRef: 1, replies: new Map(),
  rooms: new Map(),          // id -> {id, name, kind, unread}
  unlisted: new Map(),       // rooms joined or created here, not listed by the server yet
  roomsAsked: 0, roomsShown: 0, // room list requests made, and the newest shown
  current: null,             // open room id
  lastSeq: new Map(),        // room -> highest seq seen
  firstSeq: new Map(),       // room -> lowest seq loaded
  online: new Set(),         // user ids
  typers: new Map(),         // user id -> {name, room, timer}
  replyTo: null,
  retry: 0,
  typingSent: 0,
  readSent: new Map(),       // room -> seq last marked read
  members: [],               // members of the open room, as last known
};

// ---- identity -------------------------------------------------------------

function tokenExpiry(token) {
  try { return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).exp * 1000; }
  catch { return 0; }
}

async function signIn(name) {
  const body = name.trim() ? { name: name.trim() } : {};
  const r = await fetch('/v1/auth/guest', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) throw new Error(j.message || 'sign-in failed');
  // Per tab: each tab of one browser is a guest of its own.
  sessionStorage.setItem('chat.token', j.token);
  sessionStorage.setItem('chat.user', JSON.stringify(j.user));
  return j;
}

function start() {
  const token = sessionStorage.getItem('chat.token');
  if (token && tokenExpiry(token) > Date.now() + 60_000) {
    S.token = token; S.user = JSON.parse(sessionStorage.getItem('chat.user'));
    showApp();
  } else {
    $('signin').hidden = false; $('app').hidden = true; $('signout').hidden = true;
    $('me').textContent = ''; setConnection('signed out');
    $('name').focus();
  }
}

// Signing out forgets this tab's guest and everything shown.
function signOut() {
  sessionStorage.removeItem('chat.token'); sessionStorage.removeItem('chat.user');
  const ws = S.ws; S.ws = null; if (ws) ws.close(1000);
  Object.assign(S, { token: null, user: null, current: null, members: [], replyTo: null, thread: null });
  for (const m of [S.rooms, S.unlisted, S.lastSeq, S.firstSeq, S.readSent, S.typers]) m.clear();
  S.online.clear();
  $('log').textContent = ''; $('rooms').textContent = ''; $('members').textContent = '';
  $('room-title').textContent = 'Join or pick a room'; $('thread').hidden = true; $('results').hidden = true;
  start();
}

function showApp() {
  $('signin').hidden = true; $('app').hidden = false;
  $('me').textContent = `Signed in as ${S.user.name}`;
  $('signout').hidden = false;
  connect();
}

// ---- connection -----------------------------------------------------------

function setConnection(text) {
  const el = $('connection');
  el.textContent = text;
  el.classList.toggle('up', text === 'connected');
}

function connect() {
  setConnection(S.retry ? 'reconnecting' : 'connecting');
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/v1/ws?token=${encodeURIComponent(S.token)}`);
  S.ws = ws;
  ws.onmessage = (e) => handle(JSON.parse(e.data));
  ws.onclose = (e) => {
    if (S.ws !== ws) return;
    for (const [, p] of S.replies) p.reject(new Error('connection lost'));
    S.replies.clear();
    if (e.code === 4001 || e.code === 1008) { sessionStorage.removeItem('chat.token'); return start(); }
    setConnection('reconnecting');
    const delay = Math.min(10_000, 250 * 2 ** S.retry++) * (0.5 + Math.random() / 2);
    setTimeout(connect, delay);
  };
}

function request(type, data) {
  return new Promise((resolve, reject) => {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return reject(new Error('not connected'));
    const ref = `w${S.nextRef++}`;
    S.replies.set(ref, { resolve, reject });
    S.ws.send(JSON.stringify({ type, ref, data }));
  });
}

function notice(text) {
  $('notice').textContent = text;
  if (text) setTimeout(() => { if ($('notice').textContent === text) $('notice').textContent = ''; }, 6000);
}

// ---- events ---------------------------------------------------------------

function handle(f) {
  if (f.ref && S.replies.has(f.ref)) {
    const p = S.replies.get(f.ref); S.replies.delete(f.ref);
    return f.type === 'ack' ? p.resolve(f.data) : p.reject(Object.assign(new Error(f.data.message), { code: f.data.code }));
  }
  const d = f.data;
  switch (f.type) {
    // Whoever is online is told again after this frame: what was missed
    // while disconnected (someone going offline) must not linger.
    case 'session:ready': S.online.clear(); return onReady(d);
    case 'message:persisted': return onMessage(d.message, d.temp_id);
    case 'message:edited': return renderMessage(d.message);
    case 'message:deleted': return onDeleted(d.room, d.id);
    case 'message:reactions': return onReactions(d);
    case 'message:read': return onRead(d);
    case 'typing:start': return onTyping(d, true);
    case 'typing:stop': return onTyping(d, false);
    case 'room:joined': return onJoined(d);
    case 'room:left': return onLeft(d);
    case 'room:role': return systemLine(d.room, `${who(d.user)} is now ${d.role}`);
    case 'presence:online': S.online.add(d.user.id); return renderPresence();
    case 'presence:offline': S.online.delete(d.user.id); return renderPresence();
    case 'match:found': notice(`Matched with ${who(d.peer)}`); return addDirect(d.room, d.peer).then(() => openRoom(d.room));
    case 'error': return notice(d.message);
  }
}

async function onReady(d) {
  S.retry = 0;
  setConnection('connected');
  await refreshRooms();
  if (S.current && S.rooms.has(S.current)) await catchUp(S.current);
  else if (!S.current && d.rooms.length) await openRoom(d.rooms[0]);
}

async function refreshRooms() {
  const asked = ++S.roomsAsked;
  const r = await fetch('/v1/rooms', { headers: { authorization: `Bearer ${S.token}` } });
  if (!r.ok) return;
  const { rooms } = await r.json();
  // Answers can arrive out of order: an older list never replaces a newer.
  if (asked < S.roomsShown) return;
  S.roomsShown = asked;
  S.rooms = new Map(rooms.map((room) => [room.id, room]));
  keepUnlisted();
  renderRooms();
}

// A room just joined or created is acked before it is stored, so the room
// list (read from the database) may not have it yet, or a new direct room
// may not have its second member yet: show what this client knows at once,
// until the server lists the room whole.
async function listRoom(id, room) {
  S.unlisted.set(id, room);
  keepUnlisted();
  renderRooms();
  await refreshRooms();
}

function keepUnlisted() {
  for (const [id, mine] of S.unlisted) {
    const listed = S.rooms.get(id);
    if (!listed) S.rooms.set(id, mine);
    else if (mine.peer_id && !listed.peer_id) Object.assign(listed, { peer_id: mine.peer_id, peer_name: mine.peer_name });
    else S.unlisted.delete(id);
  }
}

function addDirect(id, peer) {
  return listRoom(id, { id, kind: 'direct', unread: 0, peer_id: peer.id, peer_name: who(peer) });
}

// A direct room goes by its other member; a group room by its name.
function roomLabel(room) {
  return room.peer_name ? `@${room.peer_name}` : (room.name || room.id);
}

function renderRooms() {
  const ul = $('rooms'); ul.textContent = '';
  for (const room of S.rooms.values()) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('aria-current', String(room.id === S.current));
    const label = document.createElement('span');
    label.textContent = roomLabel(room);
    if (room.peer_id) {
      // A direct room shows whether the other member is online.
      const dot = document.createElement('span'); dot.className = 'dot'; dot.dataset.user = room.peer_id;
      b.append(dot);
    }
    b.append(label);
    if (room.unread && room.id !== S.current) {
      const badge = document.createElement('span'); badge.className = 'badge';
      badge.textContent = room.unread; badge.setAttribute('aria-label', `${room.unread} unread`);
      b.append(badge);
    }
    b.onclick = () => openRoom(room.id);
    li.append(b); ul.append(li);
  }
  renderPresence();
}

function renderPresence() {
  const online = (id) => S.online.has(id) || id === S.user.id;
  for (const el of document.querySelectorAll('#members [data-user]')) {
    el.querySelector('.dot').classList.toggle('on', online(el.dataset.user));
  }
  for (const dot of document.querySelectorAll('#rooms .dot[data-user]')) {
    const on = online(dot.dataset.user);
    dot.classList.toggle('on', on);
    dot.setAttribute('role', 'img');
    dot.setAttribute('aria-label', on ? 'online' : 'offline');
  }
}

// ---- rooms ----------------------------------------------------------------

// Opens a room at its newest messages, or (`at`: a message's seq) around
// that message.
async function openRoom(id, at) {
  S.current = id;
  S.replyTo = null; $('replying').hidden = true;
  const unread = S.rooms.get(id)?.unread || 0;
  $('room-title').textContent = roomLabel(S.rooms.get(id) || { id });
  $('log').textContent = ''; $('typing').textContent = '';
  if (!S.members.length || S.membersRoom !== id) renderMembers([]);
  S.membersRoom = id;
  S.lastSeq.delete(id); S.firstSeq.delete(id);
  const room = S.rooms.get(id); if (room) room.unread = 0;
  renderMute();
  renderRooms();
  if (at) {
    await loadPage(id, { after: Math.max(0, at - 10) });
    await catchUp(id, 4);
  } else {
    await loadPage(id, {});
    newMessagesLine(unread);
  }
  markRead();
}

async function loadPage(room, q) {
  const { messages } = await request('history:fetch', { room, ...q, limit: 50 });
  for (const m of messages) renderMessage(m, q.before ? 'top' : 'bottom');
  regroup();
  if (messages.length) {
    S.firstSeq.set(room, Math.min(S.firstSeq.get(room) ?? Infinity, messages[0].seq));
    S.lastSeq.set(room, Math.max(S.lastSeq.get(room) ?? 0, messages[messages.length - 1].seq));
  }
  if (!q.before) scrollDown();
  return messages.length;
}

// After a reconnect: everything after the last seq seen, page by page
// (at most `pages` of them).
async function catchUp(room, pages = Infinity) {
  for (let i = 0; i < pages; i++) {
    const after = S.lastSeq.get(room) ?? 0;
    const n = await loadPage(room, after ? { after } : {});
    if (n < 50 || !after) break;
  }
  markRead();
}

async function onJoined(d) {
  if (d.user.id === S.user.id) {
    await refreshRooms();
    if (!S.current) openRoom(d.room);
    return;
  }
  systemLine(d.room, `${who(d.user)} joined`);
  if (d.room === S.current && !S.members.some((u) => u.id === d.user.id)) renderMembers([...S.members, d.user]);
}

function onLeft(d) {
  if (d.user.id === S.user.id) { S.rooms.delete(d.room); S.unlisted.delete(d.room); renderRooms(); return; }
  systemLine(d.room, `${who(d.user)} left`);
  if (d.room === S.current) renderMembers(S.members.filter((u) => u.id !== d.user.id));
}

function systemLine(room, text) {
  if (room !== S.current) return;
  const li = document.createElement('li'); li.className = 'system'; li.textContent = text;
  $('log').append(li); scrollDown();
}

// ---- typing ---------------------------------------------------------------

function onTyping(d, on) {
  if (on) {
    clearTyper(d.user.id);
    S.typers.set(d.user.id, { name: who(d.user), room: d.room, timer: setTimeout(() => clearTyper(d.user.id), 7000) });
  } else clearTyper(d.user.id);
  renderTypers();
}

function clearTyper(id) {
  const t = S.typers.get(id); if (t) { clearTimeout(t.timer); S.typers.delete(id); renderTypers(); }
}

function renderTypers() {
  const names = [...S.typers.values()].filter((t) => t.room === S.current).map((t) => t.name);
  $('typing').textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
}

// ---- sending --------------------------------------------------------------

// "1m30s" -> 90; "2h" -> 7200.
function parseDuration(s) {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(s);
  if (!m || !s) return null;
  return (Number(m[1] || 0) * 3600) + (Number(m[2] || 0) * 60) + Number(m[3] || 0);
}

async function send(raw) {
  const room = S.current; if (!room) return notice('Join or pick a room first');
  const data = { room, text: raw, client_id: crypto.randomUUID?.() ?? String(Math.random()) };
  const sched = /^\/schedule\s+(\S+)\s+([\s\S]+)$/.exec(raw);
  if (sched) {
    const secs = parseDuration(sched[1]);
    if (!secs) return notice('Use /schedule 1m30s your text');
    data.text = sched[2]; data.deliver_after_s = secs;
  }
  if (S.replyTo) { data.reply_to = S.replyTo; S.replyTo = null; $('replying').hidden = true; }
  const mentions = mentionedIn(data.text);
  if (mentions.length) data.mentions = mentions;
  const li = document.createElement('li'); li.className = 'pending';
  const mine = document.createElement('span'); mine.className = 'sender'; mine.textContent = S.user.name;
  const text = document.createElement('span'); text.className = 'text'; text.textContent = data.text;
  const meta = document.createElement('span'); meta.className = 'meta';
  meta.textContent = data.deliver_after_s ? `scheduled in ${sched[1]}` : 'sending…';
  li.append(mine, text, meta); $('log').append(li); scrollDown();
  try {
    const ack = await request('message:send', data);
    li.dataset.temp = ack.temp_id;
    if (data.deliver_after_s) setTimeout(() => li.remove(), 3000);
    else meta.textContent = 'sent';
  } catch (e) {
    meta.textContent = `not sent: ${e.message}`;
  }
}

// ---- wiring ---------------------------------------------------------------

$('signin-form').onsubmit = async (e) => {
  e.preventDefault();
  try { const j = await signIn($('name').value); S.token = j.token; S.user = j.user; showApp(); }
  catch (err) { $('signin-error').textContent = err.message; }
};

$('join-form').onsubmit = async (e) => {
  e.preventDefault();
  const room = $('room-input').value.trim();
  try {
    const ack = await request('room:join', { room });
    $('room-input').value = '';
    await listRoom(ack.room, { id: ack.room, kind: 'group', unread: 0 });
    await openRoom(ack.room);
    renderMembers(ack.members);
  } catch (err) { notice(err.message); }
};

function renderMembers(members) {
  S.members = members;
  const box = $('members'); box.textContent = '';
  for (const u of members) {
    const span = document.createElement('span'); span.dataset.user = u.id;
    const dot = document.createElement('span'); dot.className = 'dot';
    span.append(dot, ` ${who(u)}`);
    if (u.id !== S.user.id) {
      const b = document.createElement('button'); b.type = 'button'; b.textContent = 'Direct chat';
      b.setAttribute('aria-label', `Direct chat with ${who(u)}`);
      b.onclick = async () => {
        try { const { room } = await request('room:create', { kind: 'direct', members: [u.id] }); await addDirect(room, u); openRoom(room); }
        catch (err) { notice(err.message); }
      };
      span.append(' ', b, manageMenu(u));
    }
    box.append(span);
  }
  renderPresence();
}

$('signout').onclick = signOut;
$('random').onclick = () => request('match:random', {}).then(() => notice('Looking for someone to chat with…')).catch((e) => notice(e.message));
// Muting a room: its messages no longer reach you while you are offline.
function renderMute() {
  const room = S.rooms.get(S.current); const b = $('mute');
  b.hidden = !room;
  const muted = room?.notifications === 'none';
  b.textContent = muted ? 'Unmute' : 'Mute'; b.setAttribute('aria-pressed', String(muted));
}
$('mute').onclick = async () => {
  const room = S.rooms.get(S.current); if (!room) return;
  const level = room.notifications === 'none' ? 'all' : 'none';
  try { await request('room:notifications', { room: room.id, level }); room.notifications = level; renderMute(); }
  catch (e) { notice(`Could not change notifications: ${e.message}`); }
};

// Mentions: "@" and the start of a member's name offers the members; the
// members named as "@Name" in a message are sent as its mentions.
function mentionedIn(text) {
  return S.members.filter((u) => u.id !== S.user.id && text.includes(`@${who(u)}`)).map((u) => u.id);
}
function mentionQuery() {
  const input = $('message'); const upto = input.value.slice(0, input.selectionStart ?? input.value.length);
  const m = /(?:^|\s)@([^@\n]*)$/.exec(upto);
  return m ? m[1] : null;
}
function renderPicker() {
  const q = mentionQuery(); const ul = $('mention-picker'); ul.textContent = '';
  const found = q === null ? [] : S.members.filter((u) => u.id !== S.user.id && who(u).toLowerCase().startsWith(q.toLowerCase())).slice(0, 8);
  ul.hidden = !found.length;
  for (const u of found) {
    const li = document.createElement('li'); li.setAttribute('role', 'option');
    const b = document.createElement('button'); b.type = 'button'; b.textContent = `@${who(u)}`;
    b.onclick = () => pickMention(u);
    li.append(b); ul.append(li);
  }
}
function pickMention(u) {
  const input = $('message'); const at = input.selectionStart ?? input.value.length;
  const before = input.value.slice(0, at).replace(/@([^@\n]*)$/, `@${who(u)} `);
  input.value = before + input.value.slice(at);
  input.focus(); input.selectionStart = input.selectionEnd = before.length;
  renderPicker();
}

$('cancel-reply').onclick = () => { S.replyTo = null; $('replying').hidden = true; };

$('send-form').onsubmit = (e) => {
  e.preventDefault();
  const text = $('message').value;
  if (!text.trim()) return;
  $('message').value = '';
  if (S.current) request('typing:stop', { room: S.current }).catch(() => {});
  S.typingSent = 0;
  send(text);
};

$('message').onkeydown = (e) => {
  // Tab takes the first member offered.
  const first = $('mention-picker').querySelector('button');
  if (e.key === 'Tab' && first && !$('mention-picker').hidden) { e.preventDefault(); first.click(); }
};

$('message').oninput = () => {
  renderPicker();
  if (!S.current || !$('message').value) return;
  const now = Date.now();
  if (now - S.typingSent > 3000) { S.typingSent = now; request('typing:start', { room: S.current }).catch(() => {}); }
};

$('log').onscroll = () => {
  const room = S.current; const first = S.firstSeq.get(room);
  if ($('log').scrollTop < 20 && first > 1 && !S.loadingOlder) {
    S.loadingOlder = true;
    loadPage(room, { before: first }).finally(() => { S.loadingOlder = false; });
  }
};

document.addEventListener('visibilitychange', () => markRead());
window.addEventListener('focus', () => markRead());
