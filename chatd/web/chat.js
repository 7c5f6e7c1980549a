/*
 * chatd browser client.
 *
 * Speaks the chatd WebSocket protocol (JSON text frames, one object each) on
 * /ws of the page's own host.  Everything the server or other users supply is
 * rendered as text nodes (textContent / Node.append(string)); the only markup
 * ever built from user text is <a> elements for http(s) links, whose href is
 * checked with the URL parser and whose label is a text node.  User text is
 * isolated in <bdi> elements, so that right-to-left text cannot reorder the
 * nick or the words around it, and the bidirectional controls in it
 * (overrides, embeddings, isolates, marks) are shown as visible tags rather
 * than applied, as the line door does: "\u202Ebidi" never reads "idib".
 *
 * Message ids come from one increasing sequence for rooms and private
 * messages alike, so every view keeps the ids it shows: history pages, pages
 * fetched after a reconnect and live messages are merged in id order, each
 * message shown once.
 */
(function () {
  'use strict';

  const MAX_LINES = 1000;      // lines kept per view while new ones arrive
  const HISTORY_LIMIT = 50;    // messages asked for per history request
  const HISTORY_MAX = 200;     // the most the server returns at once
  const HISTORY_PAGE = 20;     // what the server returns when no limit is given
  const MAX_BACKOFF = 30;      // seconds between reconnect attempts, at most
  const GAP_WAIT = 2500;       // ms to wait for a rejoined room's history page
  const STATUS = '*';          // key of the status view (shown when in no room)

  const $ = (id) => document.getElementById(id);
  const ui = {
    login: $('login'), loginForm: $('login-form'), nickInput: $('nick-input'),
    passwordInput: $('password-input'), loginButton: $('login-button'), loginError: $('login-error'),
    app: $('app'), conn: $('conn-state'), myNick: $('my-nick'), myAccount: $('my-account'),
    roomList: $('room-list'), pmList: $('pm-list'), pmEmpty: $('pm-empty'), roomsEmpty: $('rooms-empty'),
    joinForm: $('join-form'), joinInput: $('join-input'),
    title: $('view-title'), topic: $('topic'), banner: $('conn-banner'),
    bannerText: $('conn-banner-text'), reconnectNow: $('reconnect-now'),
    messages: $('messages'), inputForm: $('input-form'), input: $('input'),
    userList: $('user-list'), userCount: $('user-count'), usersMore: $('users-more'), backdrop: $('backdrop'),
  };

  /* ------------------------------------------------------------------ state */

  const S = {
    ws: null,
    nick: '',             // my nick (as the server knows it once welcomed)
    password: '',         // kept in memory only, to sign on again after a drop
    account: null,        // the account this session proved, if any
    pendingPassword: null, // {what, password, nick} until registered/identified/password
    welcomed: false,      // between `welcome` and the socket closing
    everWelcomed: false,  // once true, a lost connection is re-established
    attempt: 0,           // reconnect attempts since the last welcome
    refused: 0,           // reconnects refused because our old session still holds the nick
    stay: null,           // why not to reconnect (signed on elsewhere, killed), if so
    rejoins: 0,           // joins sent on reconnecting whose already_joined is expected
    timer: null, retryAt: 0, ticker: null,
    views: new Map(),     // key -> view; rooms keyed "#room", PMs "@nick" (folded)
    current: STATUS,
    pendingSwitch: null,  // view key to show once our join / private message is confirmed
    asked: { who: new Set(), topic: new Set() },
    sent: [], sentPos: 0, // input history for Up/Down
    unsent: false,        // set when the last input could not be sent
  };

  const fold = (name) => String(name).toLowerCase();
  const isMe = (nick) => fold(nick) === fold(S.nick);
  const narrow = () => window.matchMedia('(max-width: 700px)').matches;

  // Web storage may be disabled (privacy settings); it only adds comfort.
  function stored(area, key, value) {
    try {
      const s = window[area];
      if (value === undefined) return s.getItem(key);
      if (value === null) s.removeItem(key); else s.setItem(key, value);
    } catch (e) { /* not available */ }
    return null;
  }

  function makeView(kind, name, key) {
    const v = { key, kind, name, pane: el('div', { className: 'pane' }), unread: 0, mention: false,
                users: new Map(), ops: new Set(), topic: undefined, topicBy: '', ids: new Map(),
                count: null,       // a big room's members, when `users` may hold only some of them
                page: 0,           // ... and the last page of them fetched (0: none)
                pages: 1,          // ... of how many, when that page came
                maxId: -Infinity, fromBottom: null, roomKey: null,
                more: undefined,   // whether older history exists (undefined: not known)
                loading: false,    // a request for older history is on its way
                gapFloor: null,    // after a reconnect: the newest id we had before it
                gapMark: null,     // ... and the line after which missed messages go
                pageSinceJoin: false, gapTimer: null,
                seen: null,        // a PM with unread messages: the id before the first of them
                restoring: undefined,  // a PM restored after a reload: the id read up to
                log: new Map() };  // a PM: its newest messages by id, kept over a reload
    if (kind !== 'status') {
      v.olderBtn = el('button', { type: 'button', className: 'linkish' }, 'Load older messages');
      v.olderBtn.addEventListener('click', () => loadOlder(v));
      v.top = el('div', { className: 'pane-top' });
      v.pane.append(v.top);
      renderTop(v);
    }
    return v;
  }
  S.status = makeView('status', 'chatd', STATUS);
  S.status.pane.append(el('p', { className: 'empty' },
    'You are not in any room. Join one from the sidebar or type /join #room.'));

  const view = (key) => S.views.get(key) || S.status;
  const cur = () => view(S.current);
  const rooms = () => [...S.views.values()].filter((v) => v.kind === 'room');
  const pms = () => [...S.views.values()].filter((v) => v.kind === 'pm');

  const label = (v) => (v.kind === 'pm' ? '@' : '') + v.name;

  // The view for a room or a private peer, created (and listed) if needed.
  function ensure(kind, name) {
    const key = (kind === 'pm' ? '@' : '') + fold(name);
    let v = S.views.get(key);
    if (!v) {
      v = makeView(kind, name, key);
      S.views.set(key, v);
      renderSidebar();
      if (kind === 'pm') requestHistory(v, null, HISTORY_LIMIT);
      else saveRooms();
    }
    if (kind === 'pm') v.users = new Map([[fold(name), name], [fold(S.nick), S.nick]]);
    return v;
  }
  const ensureRoom = (name) => ensure('room', name);
  const ensurePm = (nick) => ensure('pm', nick);

  function removeView(v) {
    S.views.delete(v.key);
    clearTimeout(v.gapTimer);
    if (v.kind === 'room') saveRooms();
    if (S.current === v.key) switchTo(defaultKey());
    else renderSidebar();
  }

  function defaultKey() {
    const first = rooms()[0] || pms()[0];
    return first ? first.key : STATUS;
  }

  // The rooms of this tab survive a reload (sessionStorage is per tab).
  function saveRooms() {
    if (S.everWelcomed) stored('sessionStorage', 'chatd.rooms', JSON.stringify(rooms().map((v) => v.name)));
  }

  // So do its private conversations, with what was said in them and the id
  // of the newest message read in each: after the reload, what the peer said
  // after that is unread again.  The server's private history would not do
  // for a guest, who sees only what was said since it (re)took its nickname.
  // All of it belongs to the nickname: signing on as another forgets it.
  const PM_KEPT = 50;          // messages kept per private conversation
  function savePms() {
    if (!S.everWelcomed) return;
    const read = (v) => {
      const id = v.restoring !== undefined ? v.restoring : v.unread && v.seen !== null ? v.seen : v.maxId;
      return Number.isFinite(id) ? id : null;
    };
    const list = pms().map((v) => ({ name: v.name, read: read(v), unread: v.unread }));
    stored('sessionStorage', 'chatd.pms', JSON.stringify({ nick: S.nick, pms: list }));
  }

  // The messages themselves are only written when the page goes away.
  function savePmMessages() {
    if (!S.everWelcomed) return;
    savePms();
    const log = {};
    for (const v of pms()) log[v.key] = [...v.log.values()].sort((a, b) => a.id - b.id).slice(-PM_KEPT);
    stored('sessionStorage', 'chatd.pm-messages', null);   // rather nothing than a stale copy
    stored('sessionStorage', 'chatd.pm-messages', JSON.stringify({ nick: S.nick, log }));
  }
  window.addEventListener('pagehide', savePmMessages);
  document.addEventListener('visibilitychange', () => { if (document.hidden) savePmMessages(); });

  // After a reload: the private conversations this tab had with this nick.
  // Their history is asked for once we are welcomed (see historyPage).
  function restorePms() {
    const load = (key) => {
      try {
        const saved = JSON.parse(stored('sessionStorage', key) || 'null');
        return saved && typeof saved.nick === 'string' && isMe(saved.nick) ? saved : null;
      } catch (e) { return null; }
    };
    const saved = load('chatd.pms');
    const logs = (load('chatd.pm-messages') || {}).log || {};
    if (!saved || !Array.isArray(saved.pms)) return;
    for (const p of saved.pms) {
      if (!p || typeof p.name !== 'string' || !p.name || isMe(p.name)) continue;
      const key = '@' + fold(p.name);
      if (S.views.has(key)) continue;
      const v = makeView('pm', p.name, key);
      v.users = new Map([[fold(p.name), p.name], [fold(S.nick), S.nick]]);
      v.unread = Number.isInteger(p.unread) && p.unread > 0 ? p.unread : 0;
      v.mention = v.unread > 0;
      v.restoring = typeof p.read === 'number' ? p.read : -Infinity;
      S.views.set(key, v);
      const said = Object.hasOwn(logs, key) && Array.isArray(logs[key]) ? logs[key] : [];
      for (const m of said) {
        if (m && typeof m.id === 'number' && typeof m.text === 'string') addChat(v, m, 'history');
      }
    }
  }

  /* -------------------------------------------------------- rendering lines */

  const pad = (n) => String(n).padStart(2, '0');

  // Build an element: props are DOM properties (never innerHTML); string
  // children become text nodes.
  function el(tag, props, ...children) {
    const e = Object.assign(document.createElement(tag), props);
    e.append(...children);
    return e;
  }
  const span = (className, text) => el('span', { className }, text ?? '');

  // Stable hue from the (case-folded) nick: FNV-1a hash.
  function hue(nick) {
    let h = 2166136261;
    for (const ch of fold(nick)) h = Math.imul(h ^ ch.codePointAt(0), 16777619);
    return (h >>> 0) % 360;
  }

  function nickSpan(nick) {
    const s = span('nick', nick);
    s.style.setProperty('--h', hue(nick));
    return s;
  }

  // Bidirectional formatting characters: the ones the line door shows as
  // U+FFFD (ALM, LRM, RLM, LRE..RLO, LRI..PDI).  Here each is a small tag
  // naming it, so that it is seen rather than applied.
  const BIDI_NAMES = {
    0x061C: 'ARABIC LETTER MARK', 0x200E: 'LEFT-TO-RIGHT MARK', 0x200F: 'RIGHT-TO-LEFT MARK',
    0x202A: 'LEFT-TO-RIGHT EMBEDDING', 0x202B: 'RIGHT-TO-LEFT EMBEDDING',
    0x202C: 'POP DIRECTIONAL FORMATTING', 0x202D: 'LEFT-TO-RIGHT OVERRIDE',
    0x202E: 'RIGHT-TO-LEFT OVERRIDE', 0x2066: 'LEFT-TO-RIGHT ISOLATE',
    0x2067: 'RIGHT-TO-LEFT ISOLATE', 0x2068: 'FIRST STRONG ISOLATE', 0x2069: 'POP DIRECTIONAL ISOLATE',
  };
  const BIDI_RE = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;
  const codePoint = (c) => 'U+' + c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0');

  // `text` with its bidirectional controls spelled out, for attributes.
  const shown = (text) => String(text).replace(BIDI_RE, (c) => '[' + codePoint(c) + ']');

  // Append `text` as text nodes, its bidirectional controls as tags.
  function appendPlain(parent, text) {
    let last = 0;
    for (const m of text.matchAll(BIDI_RE)) {
      const tag = span('ctl', codePoint(m[0]));
      tag.title = BIDI_NAMES[m[0].codePointAt(0)] + ' (shown, not applied)';
      parent.append(text.slice(last, m.index), tag);
      last = m.index + 1;
    }
    parent.append(text.slice(last));
  }

  // Append `text` to `parent` as text nodes, turning http(s) URLs into links.
  const URL_RE = /\bhttps?:\/\/[^\s<>"]+/gi;
  function appendText(parent, text) {
    text = String(text);
    let last = 0;
    for (const m of text.matchAll(URL_RE)) {
      let url = m[0];
      // Drop trailing punctuation, but keep a ")" that closes a "(" in the URL.
      while (/[.,;:!?'\])}]$/.test(url)) {
        if (url.endsWith(')') && url.split('(').length >= url.split(')').length) break;
        url = url.slice(0, -1);
      }
      let href = null;
      try {
        const u = new URL(url);
        if (u.protocol === 'http:' || u.protocol === 'https:') href = u.href;
      } catch (e) { /* not a URL after all */ }
      appendPlain(parent, text.slice(last, m.index));
      const link = href ? el('a', { href, rel: 'noopener noreferrer', target: '_blank' }) : parent;
      appendPlain(link, url);
      if (link !== parent) parent.append(link);
      last = m.index + url.length;
    }
    appendPlain(parent, text.slice(last));
  }

  // Text written by a user (a message, a topic, a reason), isolated from
  // what is around it, links clickable, bidirectional controls shown.
  function userText(text) {
    const b = el('bdi');
    appendText(b, String(text));
    return b;
  }

  // A line skeleton: <div class="line CLS"><time>HH:MM</time><span class="body"/></div>
  function makeLine(cls, ts) {
    const d = typeof ts === 'number' ? new Date(ts * 1000) : new Date();
    const today = new Date().toDateString() === d.toDateString();
    const time = el('time', { dateTime: d.toISOString(), title: d.toLocaleString() },
                    pad(d.getHours()) + ':' + pad(d.getMinutes()));
    if (!today) time.dataset.day = d.toLocaleDateString([], { month: 'short', day: 'numeric' });
    const body = span('body');
    return [el('div', { className: 'line ' + cls }, time, body), body];
  }

  const atBottom = (box) => box.scrollHeight - box.scrollTop - box.clientHeight < 40;

  // Run fn (which adds lines to v) keeping the scroll position sensible:
  // stick to the bottom if we were there, else keep what's on screen in place.
  function withScroll(v, keep, fn) {
    if (v !== cur()) return fn();
    const box = ui.messages;
    const stick = atBottom(box);
    const fromBottom = box.scrollHeight - box.scrollTop;
    const result = fn();
    if (stick) box.scrollTop = box.scrollHeight;
    else if (keep) box.scrollTop = box.scrollHeight - fromBottom;
    return result;
  }

  // Drop the oldest lines of a view that keeps growing at the bottom.
  function trim(v) {
    const limit = MAX_LINES + (v.kind === 'status' ? 0 : 1);   // the pane-top
    while (v.pane.childElementCount > limit) {
      const first = v.top ? v.top.nextElementSibling : v.pane.firstElementChild;
      if (first.dataset.id) {
        v.ids.delete(Number(first.dataset.id));
        v.more = true;            // it can be fetched again
      }
      first.remove();
    }
    if (v.top) renderTop(v);
  }

  // The control atop a pane: load older messages, or say there are none.
  function renderTop(v) {
    if (!v.top) return;
    if (v.loading) v.top.replaceChildren(span('muted', 'Loading older messages…'));
    else if (v.more) v.top.replaceChildren(v.olderBtn);
    else if (v.more === false && v.ids.size) v.top.replaceChildren(span('muted', 'Beginning of history'));
    else v.top.replaceChildren();
  }

  // System line: parts are strings (linkified text) or ready-made nodes.
  function sys(parts, cls, v) {
    v = v || cur();
    const [div, body] = makeLine('sys ' + (cls || ''));
    for (const p of [].concat(parts)) {
      if (typeof p === 'string') appendText(body, p); else body.append(p);
    }
    withScroll(v, false, () => v.pane.append(div));
    trim(v);
    return div;
  }

  const mentions = (text) => S.nick && new RegExp(
    '(^|[^\\w-])' + S.nick.replace(/[^\w]/g, '\\$&') + '($|[^\\w-])', 'i').test(text);

  // Forget message ids shown so far (they belong to an earlier server run).
  function resetIds(v) {
    v.ids.clear();
    v.log.clear();
    v.maxId = -Infinity;
    v.gapFloor = null;
    for (const node of v.pane.querySelectorAll('[data-id]')) delete node.dataset.id;
  }

  const oldestId = (v) => {
    const node = v.pane.querySelector('[data-id]');   // panes are in id order
    return node ? Number(node.dataset.id) : null;
  };

  // Where a message from history goes: after the last shown message with a
  // smaller id (at the top if none), but a message missed while we were
  // away never goes above the line that says we are back.
  function historySlot(v, id, fresh) {
    if (!fresh && id > v.maxId) return 'end';
    let node = v.pane.lastElementChild;
    while (node && !(node.dataset.id && Number(node.dataset.id) < id)) node = node.previousElementSibling;
    const mark = v.gapMark && v.gapMark.isConnected && v.gapFloor !== null && id > v.gapFloor ? v.gapMark : null;
    if (mark && (!node || node.compareDocumentPosition(mark) & Node.DOCUMENT_POSITION_FOLLOWING)) node = mark;
    return node || v.top;
  }

  // A chat message (room `message` or `private`).  `how` is 'live',
  // 'history', or 'fresh' (the first page of a view, shown above its other
  // lines).  Returns true if added.
  function addChat(v, m, how) {
    const hasId = typeof m.id === 'number';
    const fromHistory = how !== 'live';
    if (hasId && v.ids.has(m.id)) {
      if (v.ids.get(m.id) === m.ts) return false;   // seen it already
      resetIds(v);                                  // same id, other message: the server restarted
    }
    m = Object.assign({}, m, { from: String(m.from || '?'), text: String(m.text ?? '') });
    const own = isMe(m.from);
    const mention = !own && mentions(m.text);
    const [div, body] = makeLine((m.action ? 'action' : 'msg') + (own ? ' own' : '') +
                                 (mention && !fromHistory ? ' mention' : ''), m.ts);
    if (m.action) body.append('* ');
    body.append(nickSpan(m.from), ' ', userText(m.text));
    if (hasId) { div.dataset.id = m.id; v.ids.set(m.id, m.ts); }
    if (hasId && v.kind === 'pm') {
      v.log.set(m.id, { id: m.id, ts: m.ts, from: m.from, text: m.text, action: Boolean(m.action) });
      if (v.log.size > 2 * PM_KEPT) v.log.delete(Math.min(...v.log.keys()));
    }

    withScroll(v, fromHistory, () => {
      const slot = fromHistory && hasId ? historySlot(v, m.id, how === 'fresh') : 'end';
      if (slot === 'end') v.pane.append(div); else slot.after(div);
    });
    if (hasId) v.maxId = Math.max(v.maxId, m.id);
    if (own && v === cur() && !fromHistory) ui.messages.scrollTop = ui.messages.scrollHeight;
    if (!fromHistory) trim(v);
    if (!fromHistory && v !== cur() && !own) {
      if (!v.unread && hasId) v.seen = m.id - 1;
      v.unread++;
      v.mention = v.mention || mention || v.kind === 'pm';
      renderSidebar();
    } else if (v.kind === 'pm') {
      savePms();
    }
    return true;
  }

  /* ------------------------------------------------------ rendering chrome */

  function viewItem(v) {
    const btn = el('button', { type: 'button', className: 'view-btn' }, span('name', label(v)));
    if (v.unread) {
      const badge = span('badge' + (v.mention ? ' mention' : ''), v.unread > 99 ? '99+' : String(v.unread));
      badge.title = v.unread + ' unread';
      btn.append(badge);
    }
    if (v.key === S.current) btn.setAttribute('aria-current', 'true');
    btn.addEventListener('click', () => { switchTo(v.key); focusInput(); });
    const what = v.kind === 'room' ? 'Leave ' + v.name : 'Close conversation';
    const close = el('button', { type: 'button', className: 'close-btn', title: what }, '×');
    close.setAttribute('aria-label', what);
    close.addEventListener('click', () => {
      if (v.kind === 'room') send({ type: 'part', room: v.name }); else removeView(v);
      focusInput();
    });
    const cls = 'view-item' + (v.key === S.current ? ' current' : '') + (v.unread ? ' unread' : '');
    const li = el('li', { className: cls }, btn, close);
    li.dataset.view = v.key;
    return li;
  }

  function renderSidebar() {
    ui.roomList.replaceChildren(...rooms().map(viewItem));
    ui.pmList.replaceChildren(...pms().map(viewItem));
    ui.pmEmpty.hidden = pms().length > 0;
    ui.roomsEmpty.hidden = rooms().length > 0;
    const total = [...S.views.values()].reduce((n, v) => n + v.unread, 0);
    savePms();
    document.title = (total ? '(' + total + ') ' : '') + (cur().kind === 'status' ? '' : label(cur()) + ' — ') + 'chatd';
  }

  function renderHeader() {
    const v = cur();
    ui.title.textContent = label(v);
    let topic = '';
    if (v.kind === 'room' && v.topic) {
      topic = el('bdi');
      appendPlain(topic, v.topic);
    } else if (v.kind === 'room') topic = 'No topic set';
    else if (v.kind === 'pm') topic = 'Private conversation with ' + v.name;
    ui.topic.replaceChildren(topic);
    ui.topic.title = v.kind === 'room' && v.topic ? shown(v.topic) + (v.topicBy ? ' — set by ' + v.topicBy : '') : '';
    ui.input.placeholder = v.kind === 'status' ? 'Type /join #room — /help for commands'
      : 'Message ' + label(v) + ' — /help for commands';
  }

  const isOp = (v, nick) => v.ops.has(fold(nick));

  function renderUsers() {
    const v = cur();
    // Operators first, then everyone else, each alphabetically.
    const nicks = [...v.users.values()].sort((a, b) =>
      (isOp(v, b) - isOp(v, a)) || fold(a).localeCompare(fold(b)));
    const total = v.count ?? nicks.length;
    ui.userCount.textContent = total ? '— ' + total.toLocaleString() : '';
    ui.usersMore.hidden = v.count === null || v.count <= nicks.length;
    ui.userList.replaceChildren(...nicks.map((n) => {
      const op = isOp(v, n);
      const b = el('button', { type: 'button', title: (op ? 'Operator. ' : '') + (isMe(n) ? 'You' : 'Message ' + n) });
      if (op) b.append(span('op', '@'));
      b.append(nickSpan(n));
      if (isMe(n)) b.append(span('muted', ' (you)'));
      else b.addEventListener('click', () => { switchTo(ensurePm(n).key); focusInput(); });
      return el('li', { className: op ? 'is-op' : '' }, b);
    }));
  }

  function switchTo(key) {
    const box = ui.messages;
    const old = cur();
    const v = view(key);
    if (old !== v) old.fromBottom = atBottom(box) ? null : box.scrollHeight - box.scrollTop;
    S.current = v.key;
    v.unread = 0;
    v.mention = false;
    box.replaceChildren(v.pane);
    box.scrollTop = v.fromBottom === null ? box.scrollHeight : box.scrollHeight - v.fromBottom;
    renderSidebar();
    renderHeader();
    renderUsers();
    closeDrawers();
  }

  function focusInput() { if (!narrow()) ui.input.focus(); }

  function closeDrawers() {
    ui.app.classList.remove('show-sidebar', 'show-users');
    ui.backdrop.hidden = true;
  }

  /* ---------------------------------------------------------------- history */

  // Ask for a page of a view's history (older than `before` if given; of
  // `limit` messages, or the server's default page if null).
  function requestHistory(v, before, limit) {
    const frame = v.kind === 'pm' ? { type: 'history', with: v.name } : { type: 'history', room: v.name };
    if (limit !== null) frame.limit = limit;
    if (before !== null) frame.before = before;
    return sendQuiet(frame);
  }

  // Scrolling up (or the button atop the pane) fetches the page before the
  // oldest message shown, until the server says there is no more.
  function loadOlder(v) {
    if (v.loading || !v.more || v.gapFloor !== null) return;
    const oldest = oldestId(v);
    if (oldest === null) return;
    if (requestHistory(v, oldest, HISTORY_LIMIT)) { v.loading = true; renderTop(v); }
  }

  ui.messages.addEventListener('scroll', () => {
    if (ui.messages.scrollTop < 80) loadOlder(cur());
  });

  // A history page arrived for view v.
  function historyPage(v, f) {
    const list = (Array.isArray(f.messages) ? f.messages : [])
      .filter((m) => m && typeof m.text === 'string');
    const ids = list.map((m) => m.id).filter((id) => typeof id === 'number');
    const oldestBefore = oldestId(v);
    const fresh = v.maxId === -Infinity;
    v.pageSinceJoin = true;
    for (const m of list) addChat(v, m, fresh ? 'fresh' : 'history');
    const first = ids.length ? Math.min(...ids) : null;
    if (v.gapFloor !== null) {
      // Catching up after a reconnect: page back until we reach what we had.
      if (first === null || !f.more || first <= v.gapFloor) { v.gapFloor = null; v.gapMark = null; }
      else requestHistory(v, first, HISTORY_MAX);
    }
    // A page that reaches below the oldest message shown says whether
    // there is anything older still.
    if (v.loading || oldestBefore === null || (first !== null && first <= oldestBefore)) {
      v.more = Boolean(f.more) && first !== null;
    }
    v.loading = false;
    renderTop(v);
    if (v.restoring !== undefined) {
      // The first page of a conversation restored after a reload: what the
      // peer said after the last message read is unread.
      const read = v.restoring;
      v.restoring = undefined;
      if (v !== cur()) {
        const ids = [...v.pane.querySelectorAll('.line[data-id]:not(.own)')].map((n) => Number(n.dataset.id));
        v.unread = ids.filter((id) => id > read).length;
        v.mention = v.unread > 0;
        v.seen = read;
      }
      renderSidebar();
    }
  }

  /* ------------------------------------------------------------ connection */

  function setConn(state) {
    const stick = atBottom(ui.messages);
    ui.conn.className = 'conn ' + state;
    ui.conn.textContent = { online: 'online', connecting: 'connecting…', offline: 'offline' }[state];
    ui.banner.hidden = state === 'online' || !S.everWelcomed;
    if (state === 'connecting') ui.bannerText.textContent = 'Reconnecting…';
    ui.reconnectNow.hidden = state !== 'offline';
    updateBanner();
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;   // the banner took some room
  }

  function updateBanner() {
    if (!S.timer) return;
    const secs = Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000));
    ui.bannerText.textContent = 'Connection lost. Reconnecting in ' + secs + 's…';
  }

  // The hello for (re)signing on: with the password while it is ours.
  function hello() {
    const frame = { type: 'hello', nick: S.nick };
    if (S.password && (!S.account || fold(S.nick) === S.account)) frame.password = S.password;
    return frame;
  }

  function connect() {
    clearTimeout(S.timer);
    clearInterval(S.ticker);
    S.timer = S.ticker = null;
    if (S.ws) { S.ws.onclose = null; try { S.ws.close(); } catch (e) { /* ignore */ } }
    setConn('connecting');
    const url = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws';
    let ws;
    try { ws = new WebSocket(url); } catch (e) { S.ws = null; lost(); return; }
    S.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify(hello()));
    ws.onmessage = (ev) => {
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f && typeof f.type === 'string' && Object.hasOwn(handlers, f.type)) handlers[f.type](f);
    };
    ws.onclose = () => { if (S.ws === ws) lost(); };
  }

  // The socket closed (or never opened).
  function lost() {
    const wasWelcomed = S.welcomed;
    S.ws = null;
    S.welcomed = false;
    if (!S.everWelcomed) {
      // Still at the nick form: let the user retry by hand.
      setConn('offline');
      loginDone('Could not connect to the server. Please try again.');
      return;
    }
    if (wasWelcomed) {
      for (const v of S.views.values()) {
        // What we had: anything newer is fetched once we are back.
        if (v.maxId > -Infinity && v.gapFloor === null) v.gapFloor = v.maxId;
        v.loading = false;
        v.joined = false;
        clearTimeout(v.gapTimer);
        renderTop(v);
      }
      sys('Disconnected from the server.', 'err');
    }
    if (S.stay) {
      // Reconnecting would only take the nickname back from our other
      // session (or defy an operator): wait for the user to ask.
      setConn('offline');
      ui.bannerText.textContent = S.stay + ' Not reconnecting.';
      return;
    }
    // A restarted server would have all its clients back at the same
    // instant: wait anywhere from 0.5 s to the end of a window of 5 s that
    // doubles with each failed attempt, up to MAX_BACKOFF ("full jitter").
    // Retries refused while our old session still holds the nick (or the
    // server is not ready) are spread by then, and keep a steady
    // exponential wait, which gives the old session time to go.
    const delay = S.refused
      ? Math.min(MAX_BACKOFF, 2 ** S.attempt) * (0.8 + 0.4 * Math.random())
      : 0.5 + Math.random() * (Math.min(MAX_BACKOFF, 5 * 2 ** S.attempt) - 0.5);
    S.attempt++;
    S.retryAt = Date.now() + delay * 1000;
    S.timer = setTimeout(connect, delay * 1000);
    S.ticker = setInterval(updateBanner, 1000);
    setConn('offline');
  }

  // Back online (the browser noticed the network return): retry now.
  window.addEventListener('online', () => {
    if (S.everWelcomed && !S.ws && !S.stay) { S.attempt = 0; connect(); }
  });

  function sendQuiet(frame) {
    if (!S.welcomed || !S.ws || S.ws.readyState !== WebSocket.OPEN) return false;
    S.ws.send(JSON.stringify(frame));
    return true;
  }

  function send(frame) {
    if (sendQuiet(frame)) return true;
    sys('Not connected — nothing was sent.', 'err');
    S.unsent = true;
    return false;
  }

  /* --------------------------------------------------------- nickname form */

  function loginDone(error, field) {
    ui.loginButton.disabled = false;
    ui.loginError.textContent = error || '';
    const input = field || ui.nickInput;
    input.focus();
    input.select();
  }

  ui.nickInput.value = stored('localStorage', 'chatd.nick') || '';

  ui.loginForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const nick = ui.nickInput.value.trim();
    if (!nick) { loginDone('Please enter a nickname.'); return; }
    S.nick = nick;
    S.password = ui.passwordInput.value;
    S.account = null;
    S.stay = null;
    ui.loginError.textContent = '';
    ui.loginButton.disabled = true;
    if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(hello()));
    else if (!S.ws || S.ws.readyState !== WebSocket.CONNECTING) { S.attempt = 0; connect(); }
  });

  // Back to the form after the server refused our nickname or password.
  function refused(f) {
    const nick = S.nick;
    const text = f.message || f.code || 'Refused';
    let why = text;
    let field = ui.nickInput;
    if (f.code === 'nick_registered') {
      why = 'The nickname ' + nick + ' is registered. Enter its password to sign on, or pick another nickname.';
      field = ui.passwordInput;
    } else if (f.code === 'bad_password') {
      why = S.password ? 'Wrong password for ' + nick + '.' : text;
      ui.passwordInput.value = '';
      field = ui.passwordInput;
    } else if (f.code === 'not_registered') {
      why = nick + ' is not registered: leave the password empty (once signed on, /register PASSWORD registers it).';
      field = ui.passwordInput;
    } else if (f.code === 'nick_taken') {
      why = 'The nickname ' + nick + ' is already in use; pick another.';
    }
    S.password = '';
    if (S.everWelcomed) {
      why = 'Reconnected, but could not sign on again: ' + why;
      for (const v of S.views.values()) if (v.kind !== 'status') v.gapFloor = null;
    }
    ui.app.hidden = true;
    ui.login.hidden = false;
    ui.nickInput.value = nick;
    loginDone(why, field);
  }

  /* ------------------------------------------------------- server → client */

  const roomOf = (f) => S.views.get(fold(f.room));
  const topicLine = (t, by) => t ? ['Topic: ', userText(t)].concat(by ? [' (set by ', nickSpan(by), ')'] : []) : 'No topic is set.';
  const by = (f) => nickSpan(f.by || '?');
  // " (reason)", the reason isolated, or nothing.
  const because = (reason) => (reason ? [' (', userText(reason), ')'] : []);

  // A room event shown in that room, or (if we are not there) where we are.
  const roomSys = (f, parts, cls) => sys(parts, cls, roomOf(f) || cur());

  function account(what, name) {
    S.account = name ? fold(name) : S.account;
    ui.myAccount.hidden = !S.account;
    const p = S.pendingPassword;
    if (p && p.what === what) { S.password = p.password; S.pendingPassword = null; }
  }

  const handlers = {
    welcome(f) {
      const first = !S.everWelcomed;
      S.nick = f.nick;
      S.welcomed = S.everWelcomed = true;
      S.attempt = S.refused = 0;
      S.stay = null;
      if (typeof f.account === 'string') S.account = fold(f.account);
      else if (first) S.account = null;
      ui.myAccount.hidden = !S.account;
      ui.passwordInput.value = '';
      stored('localStorage', 'chatd.nick', S.nick);
      setConn('online');
      ui.login.hidden = true;
      ui.app.hidden = false;
      ui.loginButton.disabled = false;
      ui.myNick.textContent = S.nick;
      const have = new Set((f.rooms || []).map(fold));
      if (first) {
        // After a reload, join the rooms this tab was in.
        let saved = [];
        try { saved = JSON.parse(stored('sessionStorage', 'chatd.rooms') || '[]'); } catch (e) { /* ignore */ }
        for (const name of Array.isArray(saved) ? saved : []) {
          if (typeof name === 'string' && !have.has(fold(name))) send({ type: 'join', room: name });
        }
        restorePms();
      }
      (f.rooms || []).forEach(ensureRoom);
      // After a reconnect, re-join the rooms we were in, and catch up on
      // private conversations.
      // (Taking over a session that is still open, the server puts us back
      // in its rooms by itself, and says already_joined to these.)
      S.rejoins = 0;
      for (const v of rooms()) {
        if (have.has(v.key)) continue;
        send(v.roomKey ? { type: 'join', room: v.name, key: v.roomKey } : { type: 'join', room: v.name });
        S.rejoins++;
      }
      for (const v of pms()) {
        if (v.gapFloor !== null) v.gapMark = sys('Reconnected.', '', v);
        requestHistory(v, null, HISTORY_LIMIT);
      }
      if (!first) sys('Reconnected as ' + S.nick + '.');
      saveRooms();
      if (S.current === STATUS || !S.views.has(S.current)) switchTo(defaultKey());
      else switchTo(S.current);
      ui.input.focus();
    },

    error(f) {
      if (!S.welcomed) {           // our nick or password was refused
        const retry = ['nick_taken', 'shutting_down', 'busy', 'degraded'].includes(f.code);
        if (S.everWelcomed && retry && S.refused < 6) {
          // Our old connection still holds the nick until the server sees it
          // is gone, or a restarted node has not reached its cluster yet:
          // keep trying (with backoff) for a while.
          S.refused++;
          const ws = S.ws;
          if (ws) { ws.onclose = null; ws.close(); }
          sys(f.code === 'degraded' ? 'The server is not ready yet; retrying…'
            : 'Your nickname is still held by the old connection; retrying…', 'err');
          lost();
          return;
        }
        refused(f);
        return;
      }
      const text = f.message || f.code || 'Error';
      if (f.code === 'already_joined' && S.rejoins > 0) { S.rejoins--; return; }
      if (f.code === 'killed') S.stay = text + '.';
      if (f.code === 'taken_over') S.stay = 'Your nickname is in use by a newer session.';
      if (f.code === 'history_unavailable') {
        for (const v of S.views.values()) { v.loading = false; v.gapFloor = null; renderTop(v); }
      }
      if (S.pendingPassword && ['bad_password', 'too_many_attempts', 'not_registered',
                                'nick_registered', 'not_identified', 'busy'].includes(f.code)) {
        S.pendingPassword = null;
      }
      for (const set of Object.values(S.asked)) set.clear();
      S.pendingSwitch = null;
      sys(text, 'err');
    },

    message(f) {
      const v = roomOf(f);
      if (v) addChat(v, f, 'live');
    },

    private(f) {
      const peer = isMe(f.from) ? f.to : f.from;
      if (!peer) return;
      const v = ensurePm(peer);
      addChat(v, f, 'live');
      if (S.pendingSwitch === v.key) { S.pendingSwitch = null; switchTo(v.key); }
    },

    join(f) {
      if (isMe(f.nick)) {
        const v = ensureRoom(f.room);
        v.name = f.room;
        // A topic frame follows only if one is set: forget the one we
        // showed (a restarted server may have lost it).
        v.topic = undefined;
        v.topicBy = '';
        v.joined = true;
        v.users = new Map([[fold(f.nick), f.nick]]);
        v.count = null;
        v.page = 0;
        v.pages = 1;
        v.pageSinceJoin = false;
        if (S.pendingKey && S.pendingKey.room === v.key) { v.roomKey = S.pendingKey.key; S.pendingKey = null; }
        const line = sys('You joined ' + f.room + '.', '', v);
        if (v.gapFloor !== null) {
          // Back after a drop: the join's history page shows what we missed;
          // if none comes (the room was quiet, or the server sends none on
          // joining), ask for it.
          v.gapMark = line;
          clearTimeout(v.gapTimer);
          v.gapTimer = setTimeout(() => {
            if (!v.pageSinceJoin && v.gapFloor !== null && requestHistory(v, null, HISTORY_LIMIT)) v.pageSinceJoin = true;
          }, GAP_WAIT);
        }
        if (S.pendingSwitch === v.key) { S.pendingSwitch = null; switchTo(v.key); }
        else renderSidebar();
        if (v === cur()) renderHeader();
        return;
      }
      const v = roomOf(f);
      if (!v) return;
      v.users.set(fold(f.nick), f.nick);
      if (v.count !== null) v.count++;
      sys([nickSpan(f.nick), ' joined ' + f.room + '.'], '', v);
      if (v === cur()) renderUsers();
    },

    part(f) {
      // A kick is a part whose reason says who kicked (and why).
      if (typeof f.kicked_by === 'string') {
        const said = 'kicked by ' + f.kicked_by;
        const reason = String(f.reason || '');
        handlers.kick({ room: f.room, nick: f.nick, by: f.kicked_by,
                        reason: reason.startsWith(said) ? reason.slice(said.length).replace(/^:\s*/, '') : reason });
        return;
      }
      const v = roomOf(f);
      if (!v) return;
      const why = because(f.reason);
      if (isMe(f.nick)) {
        removeView(v);
        sys(['You left ' + f.room, ...why, '.']);
        return;
      }
      v.users.delete(fold(f.nick));
      v.ops.delete(fold(f.nick));
      if (v.count !== null) v.count--;
      sys([nickSpan(f.nick), ' left ' + f.room, ...why, '.'], '', v);
      if (v === cur()) renderUsers();
    },

    nick(f) {
      const me = isMe(f.old);
      if (me) { S.nick = f.new; ui.myNick.textContent = f.new; stored('localStorage', 'chatd.nick', f.new); }
      let shown = false;
      for (const v of rooms()) {
        if (!v.users.has(fold(f.old))) continue;
        v.users.delete(fold(f.old));
        v.users.set(fold(f.new), f.new);
        if (v.ops.delete(fold(f.old))) v.ops.add(fold(f.new));
        sys(me ? 'You are now known as ' + f.new + '.'
               : [nickSpan(f.old), ' is now known as ', nickSpan(f.new), '.'], '', v);
        shown = shown || v === cur();
      }
      const pm = S.views.get('@' + fold(f.old));
      if (pm && !me && !S.views.has('@' + fold(f.new))) {   // follow the peer to their new name
        S.views.delete(pm.key);
        const wasCurrent = S.current === pm.key;
        pm.key = '@' + fold(f.new);
        pm.name = f.new;
        S.views.set(pm.key, pm);
        if (wasCurrent) S.current = pm.key;
        ensurePm(f.new);
        sys([nickSpan(f.old), ' is now known as ', nickSpan(f.new), '.'], '', pm);
        shown = shown || wasCurrent;
      }
      if (me) for (const v of pms()) { v.users.delete(fold(f.old)); v.users.set(fold(f.new), f.new); }
      if (me && !shown) sys('You are now known as ' + f.new + '.');
      renderSidebar(); renderHeader(); renderUsers();
    },

    // All the members of a room, or (with `page`) one page of a big room's.
    users(f) {
      const v = roomOf(f);
      const nicks = Array.isArray(f.nicks) ? f.nicks : [];
      const ops = new Set((Array.isArray(f.ops) ? f.ops : []).map(fold));
      const count = typeof f.count === 'number' ? f.count : nicks.length;
      if (v) {
        // The first page starts the list anew; the others add to it.
        const page = Number.isInteger(f.page) ? f.page : 0;
        if (page <= 1) { v.users = new Map(); v.ops = new Set(); }
        for (const n of nicks) v.users.set(fold(n), n);
        for (const n of ops) v.ops.add(n);
        v.count = typeof f.count === 'number' ? f.count : null;
        v.page = page;
        v.pages = Number.isInteger(f.pages) ? f.pages : 1;
        if (v === cur()) renderUsers();
      }
      if (S.asked.who.delete(fold(f.room))) {
        const sorted = nicks.slice().sort((a, b) => fold(a).localeCompare(fold(b)))
          .map((n) => (ops.has(fold(n)) ? '@' : '') + n);
        const some = nicks.length < count ? nicks.length + ' of ' : '';
        sys('Users in ' + f.room + ' (' + some + count.toLocaleString() + '): ' + sorted.join(', '));
      }
    },

    // A big room's joins and parts of the last second, told at once: the
    // count, and who when they are few.  Nothing goes in the log, where a
    // line a second would bury the conversation: the header has the count.
    presence(f) {
      const v = roomOf(f);
      if (!v || typeof f.count !== 'number') return;
      for (const n of Array.isArray(f.left) ? f.left : []) { v.users.delete(fold(n)); v.ops.delete(fold(n)); }
      for (const n of Array.isArray(f.joined) ? f.joined : []) v.users.set(fold(n), n);
      v.count = f.count;
      if (v === cur()) renderUsers();
    },

    rooms(f) {
      const list = Array.isArray(f.rooms) ? f.rooms : [];
      sys(list.length ? 'Rooms on this server (click to join):' : 'There are no rooms.');
      for (const r of list) {
        const b = el('button', { type: 'button', className: 'linkish' }, String(r.room));
        b.addEventListener('click', () => { joinRoom(r.room); focusInput(); });
        sys([b, ' — ' + r.users + (r.users === 1 ? ' user' : ' users')].concat(r.topic ? [' — ', userText(r.topic)] : []));
      }
    },

    topic(f) {
      const v = roomOf(f);
      const asked = S.asked.topic.delete(fold(f.room));
      const t = f.topic || '';
      if (!v) { if (asked) sys([f.room + ': '].concat(topicLine(t, f.by))); return; }
      const first = v.topic === undefined;
      v.topic = t;
      v.topicBy = f.by || '';
      if (asked || first) sys(topicLine(t, f.by), '', v);
      else if (t) sys([by(f), ' changed the topic to: ', userText(t)], '', v);
      else sys([by(f), ' cleared the topic.'], '', v);
      if (v === cur()) renderHeader();
    },

    history(f) {
      const v = typeof f.with === 'string' ? S.views.get('@' + fold(f.with)) : roomOf(f);
      if (v) historyPage(v, f);
    },

    kick(f) {
      const v = roomOf(f);
      const why = because(f.reason);
      if (isMe(f.nick)) {
        if (v) removeView(v);
        sys(['You were kicked from ' + f.room + ' by ', by(f), ...why, '.'], 'notice');
        return;
      }
      if (!v) return;
      v.users.delete(fold(f.nick));
      v.ops.delete(fold(f.nick));
      if (v.count !== null) v.count--;
      sys([nickSpan(f.nick), ' was kicked by ', by(f), ...why, '.'], 'mod', v);
      if (v === cur()) renderUsers();
    },

    ban(f) { roomSys(f, [by(f), ' banned ', nickSpan(f.nick), ' from ' + f.room + '.'], 'mod'); },
    unban(f) { roomSys(f, [by(f), ' lifted the ban on ', nickSpan(f.nick), ' in ' + f.room + '.'], 'mod'); },

    op(f) {
      const v = roomOf(f);
      const who = isMe(f.nick) ? 'you' : nickSpan(f.nick);
      roomSys(f, [by(f), f.op ? ' made ' : ' took operator status from ', who,
                  f.op ? ' an operator.' : '.'], 'mod');
      if (v) {
        if (f.op) v.ops.add(fold(f.nick)); else v.ops.delete(fold(f.nick));
        if (v === cur()) renderUsers();
      }
    },

    voice(f) {
      const who = isMe(f.nick) ? 'you' : nickSpan(f.nick);
      roomSys(f, [by(f), f.voiced ? ' gave voice to ' : ' took voice from ', who, '.'], 'mod');
    },

    mode(f) {
      const v = roomOf(f);
      const change = String(f.mode || '');
      if (v && /^\+k /.test(change)) v.roomKey = change.slice(3);
      else if (v && change === '-k') v.roomKey = null;
      roomSys(f, [by(f), ' set mode ' + change + ' on ' + f.room + '.'], 'mod');
    },

    modes(f) {
      const v = roomOf(f);
      if (v && f.key) v.roomKey = f.key;
      sys(f.modes ? 'Modes of ' + f.room + ': ' + f.modes + (f.key ? ' (key: ' + f.key + ')' : '')
                  : f.room + ' has no modes set.');
    },

    invite(f) {
      const b = el('button', { type: 'button', className: 'linkish' }, 'join ' + f.room);
      b.addEventListener('click', () => { joinRoom(f.room); focusInput(); });
      sys([by(f), ' invites you to ' + f.room + ' — ', b], 'notice');
    },

    registered(f) { account('registered', f.account); sys('Your nickname ' + S.nick + ' is now registered; you are signed in to it.', 'notice'); },
    identified(f) { account('identified', f.account); sys('You are identified as ' + f.account + '.', 'notice'); },
    password() { account('password'); sys('Your password was changed.', 'notice'); },

    server(f) { sys('Server: ' + f.text, 'notice'); },
  };

  /* ------------------------------------------------------- client → server */

  function joinRoom(name, key) {
    name = name.trim();
    if (!name) return;
    if (name[0] !== '#') name = '#' + name;
    if (S.views.has(fold(name))) { switchTo(fold(name)); return; }
    const frame = key ? { type: 'join', room: name, key } : { type: 'join', room: name };
    if (send(frame)) {
      S.pendingSwitch = fold(name);
      if (key) S.pendingKey = { room: fold(name), key };
    }
  }

  function say(text, action) {
    const v = cur();
    if (v.kind === 'room') send({ type: action ? 'me' : 'say', room: v.name, text });
    else if (v.kind === 'pm' && !action) send({ type: 'msg', to: v.name, text });
    else sys(v.kind === 'pm' ? '/me only works in rooms.' : 'You are not in a room. Try /join #room.', 'err');
  }

  // The current room's name, or null after an error line.
  function needRoom() {
    if (cur().kind === 'room') return cur().name;
    sys('This command needs a room: switch to one first.', 'err');
    return null;
  }

  const usage = (text) => sys('Usage: ' + text, 'err');
  const afterFirst = (rest) => rest.replace(/^\S+\s*/, '');
  const isRoom = (word) => typeof word === 'string' && word[0] === '#';

  // "[#room] REST": the room given first, or the current one.
  function roomAndRest(args, rest) {
    if (isRoom(args[0])) return [args[0], args.slice(1), afterFirst(rest)];
    const room = needRoom();
    return [room, args, rest];
  }

  // /op /deop /voice /devoice /ban /unban: [#room] NICK
  function modCommand(type, extra) {
    return (args, rest) => {
      const [room, words] = roomAndRest(args, rest);
      if (!room) return;
      if (!words[0]) { usage('/' + type + ' [#room] NICK'); return; }
      send(Object.assign({ type, room, nick: words[0] }, extra || {}));
    };
  }

  const HELP = [
    'Commands (text without a leading / is said in the current conversation):',
    '/join #room [KEY] — join a room (or switch to it)',
    '/part [#room] [reason] — leave a room (closes a private chat)',
    '/msg NICK TEXT — send a private message;  /query NICK — open a private chat',
    '/me ACTION — describe an action',
    '/nick NEW — change your nickname',
    '/topic [TEXT] — show or set the room topic',
    '/who [#room] — list users;  /rooms — list all rooms',
    '/history [N] — load N older messages here (default ' + HISTORY_PAGE + ', at most ' + HISTORY_MAX + ')',
    'Accounts: /register PASSWORD — register your nickname;  /identify [NICK] PASSWORD — sign in to it;  /password OLD NEW',
    'Operators ([#room] defaults to this room): /op NICK, /deop NICK, /voice NICK, /devoice NICK, /kick NICK [REASON], /ban NICK, /unban NICK, /invite NICK',
    '/mode [+|-FLAGS] [KEY] [N] — show or change modes: i invite only, k KEY needed, l at most N users, m only operators and voiced users speak, n only members speak, s secret, t only operators set the topic',
    'Server operators: /kill NICK [REASON]',
    '//text — send "/text" literally.  Up/Down recall, Tab completes nicks, Alt+Up/Down switch conversations, Esc closes panels.',
  ];

  // Slash commands: fn(args split on whitespace, rest = raw text after the command).
  const commands = {
    join: (args) => (args[0] ? joinRoom(args[0], args[1]) : usage('/join #room [KEY]')),
    part(args, rest) {
      let room = isRoom(args[0]) ? args[0] : null;
      const reason = (room ? afterFirst(rest) : rest).trim();
      if (!room && cur().kind === 'pm') { removeView(cur()); return; }
      if (room || (room = needRoom())) send(reason ? { type: 'part', room, reason } : { type: 'part', room });
    },
    msg(args, rest) {
      const text = afterFirst(rest);
      if (!args[0] || !text) usage('/msg NICK TEXT');
      else if (send({ type: 'msg', to: args[0], text })) S.pendingSwitch = '@' + fold(args[0]);
    },
    query: (args) => (args[0] ? switchTo(ensurePm(args[0]).key) : usage('/query NICK')),
    me: (args, rest) => (rest ? say(rest, true) : usage('/me ACTION')),
    nick: (args) => (args[0] ? send({ type: 'nick', nick: args[0] }) : usage('/nick NEW')),
    topic(args, rest) {
      const [room, , text] = roomAndRest(args, rest);
      if (!room) return;
      if (text.trim()) { send({ type: 'topic', room, text }); return; }
      if (send({ type: 'topic', room })) S.asked.topic.add(fold(room));
    },
    who(args) {
      const room = args[0] || needRoom();
      if (room && send({ type: 'who', room })) S.asked.who.add(fold(room));
    },
    rooms: () => send({ type: 'rooms' }),
    history(args) {
      const v = cur();
      if (v.kind === 'status') { needRoom(); return; }
      const n = parseInt(args[0], 10);
      const oldest = oldestId(v);
      if (v.more === false && oldest !== null) { sys('No older messages.', '', v); return; }
      if (requestHistory(v, oldest, n > 0 ? Math.min(n, HISTORY_MAX) : null)) {
        v.loading = true;
        renderTop(v);
      } else {
        sys('Not connected — nothing was sent.', 'err');
      }
    },
    register(args) {
      if (args.length !== 1) { usage('/register PASSWORD'); return; }
      if (send({ type: 'register', password: args[0] })) S.pendingPassword = { what: 'registered', password: args[0] };
    },
    identify(args) {
      if (args.length < 1 || args.length > 2) { usage('/identify [NICK] PASSWORD'); return; }
      const frame = args.length === 2 ? { type: 'identify', nick: args[0], password: args[1] }
                                      : { type: 'identify', password: args[0] };
      if (send(frame)) S.pendingPassword = { what: 'identified', password: frame.password };
    },
    password(args) {
      if (args.length !== 2) { usage('/password OLD NEW'); return; }
      if (send({ type: 'password', old: args[0], new: args[1] })) S.pendingPassword = { what: 'password', password: args[1] };
    },
    op: modCommand('op'),
    deop: modCommand('deop'),
    voice: modCommand('voice'),
    devoice: modCommand('devoice'),
    ban: modCommand('ban'),
    unban: modCommand('unban'),
    invite(args, rest) {
      // Both "/invite NICK [#room]" (as on telnet) and "/invite #room NICK".
      const room = args.find(isRoom) || needRoom();
      const nick = args.find((a) => !isRoom(a));
      if (!room) return;
      if (!nick) { usage('/invite NICK [#room]'); return; }
      send({ type: 'invite', room, nick });
    },
    kick(args, rest) {
      const [room, words, text] = roomAndRest(args, rest);
      if (!room) return;
      if (!words[0]) { usage('/kick [#room] NICK [REASON]'); return; }
      const reason = afterFirst(text).trim();
      send(reason ? { type: 'kick', room, nick: words[0], reason } : { type: 'kick', room, nick: words[0] });
    },
    mode(args, rest) {
      const [room, words] = roomAndRest(args, rest);
      if (!room) return;
      const frame = { type: 'mode', room };
      if (words[0]) frame.mode = words[0];
      // After a + change: the key for k and the number for l, in the order of their letters.
      const params = words.slice(1);
      for (const c of new Set(/^\+/.test(words[0] || '') ? words[0].slice(1) : '')) {
        if (c === 'k' && params.length) frame.key = params.shift();
        else if (c === 'l' && params.length) {
          const n = params.shift();
          frame.limit = /^[0-9]{1,10}$/.test(n) ? Number(n) : n;
        }
      }
      send(frame);
    },
    kill(args, rest) {
      if (!args[0]) { usage('/kill NICK [REASON]'); return; }
      const reason = afterFirst(rest).trim();
      send(reason ? { type: 'kill', nick: args[0], reason } : { type: 'kill', nick: args[0] });
    },
    help: () => HELP.forEach((h) => sys(h)),
  };

  function submit(text) {
    if (text.startsWith('//')) return say(text.slice(1));
    if (text[0] !== '/') return say(text);
    const m = text.slice(1).match(/^(\S*)\s*([\s\S]*)$/);
    const name = m[1].toLowerCase();
    if (Object.hasOwn(commands, name)) commands[name](m[2].split(/\s+/).filter(Boolean), m[2]);
    else sys('Unknown command /' + m[1] + ' — type /help for the list.', 'err');
  }

  /* ----------------------------------------------------------------- input */

  ui.inputForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = ui.input.value;
    if (!text.trim()) return;
    // Commands carrying passwords are not kept for Up/Down recall.
    if (!/^\/(register|identify|password)\b/i.test(text)) {
      S.sent.push(text);
      if (S.sent.length > 100) S.sent.shift();
    }
    S.sentPos = S.sent.length;
    S.unsent = false;
    submit(text);
    if (!S.unsent) ui.input.value = '';   // keep the text if it could not be sent
  });

  ui.input.addEventListener('keydown', (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const inp = ui.input;
    const recalled = inp.value === '' || inp.value === S.sent[S.sentPos];
    if (e.key === 'ArrowUp' && recalled && S.sentPos > 0) {
      e.preventDefault();
      inp.value = S.sent[--S.sentPos];
    } else if (e.key === 'ArrowDown' && recalled && S.sentPos < S.sent.length) {
      e.preventDefault();
      inp.value = S.sent[++S.sentPos] || '';
    } else if (e.key === 'PageUp' || e.key === 'PageDown') {
      // Scroll the conversation without leaving the input.
      e.preventDefault();
      ui.messages.scrollBy(0, (e.key === 'PageUp' ? -0.9 : 0.9) * ui.messages.clientHeight);
    } else if (e.key === 'Tab' && !e.shiftKey && inp.value) {
      // Complete the nick being typed from the current view's users.
      const pos = inp.selectionStart;
      const before = inp.value.slice(0, pos);
      const m = before.match(/(\S+)$/);
      if (!m) return;
      const found = [...cur().users.values()].filter((n) => !isMe(n) && fold(n).startsWith(fold(m[1]))).sort();
      if (!found.length) return;
      e.preventDefault();
      const word = found[0] + (m.index === 0 ? ': ' : ' ');
      inp.value = before.slice(0, m.index) + word + inp.value.slice(pos);
      inp.selectionStart = inp.selectionEnd = m.index + word.length;
    }
  });

  ui.joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = ui.joinInput.value.trim();
    if (!name) return;
    ui.joinInput.value = '';
    joinRoom(name);
    ui.input.focus();
  });

  ui.reconnectNow.addEventListener('click', () => { S.attempt = 0; S.stay = null; connect(); });

  // The next page of a big room's members, only when asked for: after the
  // last one (others joined meanwhile), the first again, which starts anew.
  ui.usersMore.addEventListener('click', () => {
    const v = cur();
    const page = v.page < v.pages ? v.page + 1 : 1;
    send({ type: 'members', room: v.name, page });
  });

  function toggleDrawer(cls) {
    const open = !ui.app.classList.contains(cls);
    closeDrawers();
    if (!open) return;
    ui.app.classList.add(cls);
    ui.backdrop.hidden = false;
    const first = (cls === 'show-sidebar' ? $('sidebar') : $('userlist')).querySelector('button');
    if (first) first.focus();
  }
  $('toggle-sidebar').addEventListener('click', () => toggleDrawer('show-sidebar'));
  $('toggle-users').addEventListener('click', () => toggleDrawer('show-users'));
  ui.backdrop.addEventListener('click', closeDrawers);

  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !ui.backdrop.hidden) { closeDrawers(); ui.input.focus(); return; }
    if (e.altKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown') && !ui.app.hidden) {
      // Alt+Up/Down: previous/next conversation in sidebar order.
      const order = rooms().concat(pms());
      if (!order.length) return;
      e.preventDefault();
      const i = order.findIndex((v) => v.key === S.current);
      const next = order[(i + (e.key === 'ArrowUp' ? -1 : 1) + order.length) % order.length];
      switchTo(next.key);
      ui.input.focus();
    }
  });

  switchTo(STATUS);
  ui.nickInput.focus();
})();
