/*
 * chatd browser client.
 *
 * Speaks the chatd WebSocket protocol (JSON text frames, one object each) on
 * /ws of the page's own host.  Everything the server or other users supply is
 * rendered as text nodes (textContent / Node.append(string)); the only markup
 * ever built from user text is <a> elements for http(s) links, whose href is
 * checked with the URL parser and whose label is a text node.
 */
(function () {
  'use strict';

  const MAX_LINES = 1000;      // message nodes kept per view
  const HISTORY_LIMIT = 50;    // messages fetched on entering a room
  const HISTORY_MAX = 200;     // the most the server returns at once
  const MAX_BACKOFF = 30;      // seconds between reconnect attempts, at most
  const STATUS = '*';          // key of the status view (shown when in no room)

  const $ = (id) => document.getElementById(id);
  const ui = {
    login: $('login'), loginForm: $('login-form'), nickInput: $('nick-input'),
    loginButton: $('login-button'), loginError: $('login-error'),
    app: $('app'), conn: $('conn-state'), myNick: $('my-nick'),
    roomList: $('room-list'), pmList: $('pm-list'), pmEmpty: $('pm-empty'), roomsEmpty: $('rooms-empty'),
    joinForm: $('join-form'), joinInput: $('join-input'),
    title: $('view-title'), topic: $('topic'), banner: $('conn-banner'),
    bannerText: $('conn-banner-text'), reconnectNow: $('reconnect-now'),
    messages: $('messages'), inputForm: $('input-form'), input: $('input'),
    userList: $('user-list'), userCount: $('user-count'), backdrop: $('backdrop'),
  };

  /* ------------------------------------------------------------------ state */

  const S = {
    ws: null,
    nick: '',             // my nick (as the server knows it once welcomed)
    welcomed: false,      // between `welcome` and the socket closing
    everWelcomed: false,  // once true, a lost connection is re-established
    attempt: 0,           // reconnect attempts since the last welcome
    timer: null, retryAt: 0, ticker: null,
    views: new Map(),     // key -> view; rooms keyed "#room", PMs "@nick" (folded)
    current: STATUS,
    pendingSwitch: null,  // view key to show once our join / private message is confirmed
    asked: { who: new Set(), topic: new Set(), history: new Set() },
    sent: [], sentPos: 0, // input history for Up/Down
    unsent: false,        // set when the last input could not be sent
  };

  const fold = (name) => String(name).toLowerCase();
  const isMe = (nick) => fold(nick) === fold(S.nick);
  const narrow = () => window.matchMedia('(max-width: 700px)').matches;

  function makeView(kind, name, key) {
    return { key, kind, name, pane: el('div', { className: 'pane' }), unread: 0, mention: false,
             users: new Map(), topic: undefined, topicBy: '', ids: new Map(),
             maxId: -Infinity, fromBottom: null };
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
    }
    if (kind === 'pm') v.users = new Map([[fold(name), name], [fold(S.nick), S.nick]]);
    return v;
  }
  const ensureRoom = (name) => ensure('room', name);
  const ensurePm = (nick) => ensure('pm', nick);

  function removeView(v) {
    S.views.delete(v.key);
    if (S.current === v.key) switchTo(defaultKey());
    else renderSidebar();
  }

  function defaultKey() {
    const first = rooms()[0] || pms()[0];
    return first ? first.key : STATUS;
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
      parent.append(text.slice(last, m.index));
      parent.append(href ? el('a', { href, rel: 'noopener noreferrer', target: '_blank' }, url) : url);
      last = m.index + url.length;
    }
    parent.append(text.slice(last));
  }

  // A line skeleton: <div class="line CLS"><time>HH:MM</time><span class="body"/></div>
  function makeLine(cls, ts) {
    const d = typeof ts === 'number' ? new Date(ts * 1000) : new Date();
    const time = el('time', { dateTime: d.toISOString(), title: d.toLocaleString() },
                    pad(d.getHours()) + ':' + pad(d.getMinutes()));
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

  function trim(v) {
    while (v.pane.childElementCount > MAX_LINES) {
      const first = v.pane.firstElementChild;
      if (first.dataset.id) v.ids.delete(Number(first.dataset.id));
      first.remove();
    }
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
  }

  const mentions = (text) => S.nick && new RegExp(
    '(^|[^\\w-])' + S.nick.replace(/[^\w]/g, '\\$&') + '($|[^\\w-])', 'i').test(text);

  // Forget message ids shown so far (they belong to an earlier server run).
  function resetIds(v) {
    v.ids.clear();
    v.maxId = -Infinity;
    for (const node of v.pane.querySelectorAll('[data-id]')) delete node.dataset.id;
  }

  // A chat message (room `message` or `private`).  Returns true if added.
  function addChat(v, m, fromHistory) {
    const hasId = typeof m.id === 'number';
    if (hasId && v.ids.has(m.id)) {
      if (v.ids.get(m.id) === m.ts) return false;   // seen it already
      resetIds(v);                                  // same id, other message: the server restarted
    }
    m = Object.assign({}, m, { from: String(m.from || '?'), text: String(m.text ?? '') });
    const own = isMe(m.from);
    const mention = !own && mentions(m.text);
    const [div, body] = makeLine((m.action ? 'action' : 'msg') + (own ? ' own' : '') +
                                 (mention ? ' mention' : ''), m.ts);
    if (m.action) body.append('* ', nickSpan(m.from), ' ');
    else body.append(nickSpan(m.from));
    appendText(body, m.text);
    if (hasId) { div.dataset.id = m.id; v.ids.set(m.id, m.ts); }

    withScroll(v, fromHistory, () => {
      if (fromHistory && hasId && m.id < v.maxId) {
        // Older than something shown: insert after the last message with a smaller id.
        let node = v.pane.lastElementChild;
        while (node && !(node.dataset.id && Number(node.dataset.id) < m.id)) node = node.previousElementSibling;
        if (node) node.after(div); else v.pane.prepend(div);
      } else {
        v.pane.append(div);
      }
    });
    if (hasId) v.maxId = Math.max(v.maxId, m.id);
    if (own && v === cur()) ui.messages.scrollTop = ui.messages.scrollHeight;
    trim(v);
    if (!fromHistory && v !== cur() && !own) {
      v.unread++;
      v.mention = v.mention || mention || v.kind === 'pm';
      renderSidebar();
    }
    return true;
  }

  /* ------------------------------------------------------ rendering chrome */

  function viewItem(v) {
    const btn = el('button', { type: 'button', className: 'view-btn' }, span('name', label(v)));
    if (v.unread) btn.append(span('badge' + (v.mention ? ' mention' : ''), v.unread > 99 ? '99+' : String(v.unread)));
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
    return el('li', { className: cls }, btn, close);
  }

  function renderSidebar() {
    ui.roomList.replaceChildren(...rooms().map(viewItem));
    ui.pmList.replaceChildren(...pms().map(viewItem));
    ui.pmEmpty.hidden = pms().length > 0;
    ui.roomsEmpty.hidden = rooms().length > 0;
    const total = [...S.views.values()].reduce((n, v) => n + v.unread, 0);
    document.title = (total ? '(' + total + ') ' : '') + (cur().kind === 'status' ? '' : label(cur()) + ' — ') + 'chatd';
  }

  function renderHeader() {
    const v = cur();
    ui.title.textContent = label(v);
    let topic = '';
    if (v.kind === 'room') topic = v.topic ? v.topic : 'No topic set';
    else if (v.kind === 'pm') topic = 'Private conversation with ' + v.name;
    ui.topic.textContent = topic;
    ui.topic.title = v.kind === 'room' && v.topic ? v.topic + (v.topicBy ? ' — set by ' + v.topicBy : '') : '';
    ui.input.placeholder = v.kind === 'status' ? 'Type /join #room — /help for commands'
      : 'Message ' + label(v) + ' — /help for commands';
  }

  function renderUsers() {
    const v = cur();
    const nicks = [...v.users.values()].sort((a, b) => fold(a).localeCompare(fold(b)));
    ui.userCount.textContent = nicks.length ? '(' + nicks.length + ')' : '';
    ui.userList.replaceChildren(...nicks.map((n) => {
      const b = el('button', { type: 'button', title: isMe(n) ? 'You' : 'Message ' + n }, nickSpan(n));
      if (isMe(n)) b.append(span('muted', ' (you)'));
      else b.addEventListener('click', () => { switchTo(ensurePm(n).key); focusInput(); });
      return el('li', {}, b);
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
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', nick: S.nick }));
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
    if (wasWelcomed) sys('Disconnected from the server.', 'err');
    const delay = Math.min(MAX_BACKOFF, 2 ** S.attempt);
    S.attempt++;
    S.retryAt = Date.now() + delay * 1000;
    S.timer = setTimeout(connect, delay * 1000);
    S.ticker = setInterval(updateBanner, 1000);
    setConn('offline');
  }

  function send(frame) {
    if (!S.welcomed || !S.ws || S.ws.readyState !== WebSocket.OPEN) {
      sys('Not connected — nothing was sent.', 'err');
      S.unsent = true;
      return false;
    }
    S.ws.send(JSON.stringify(frame));
    return true;
  }

  /* --------------------------------------------------------- nickname form */

  function loginDone(error) {
    ui.loginButton.disabled = false;
    ui.loginError.textContent = error || '';
    ui.nickInput.focus();
    ui.nickInput.select();
  }

  ui.loginForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const nick = ui.nickInput.value.trim();
    if (!nick) { loginDone('Please enter a nickname.'); return; }
    S.nick = nick;
    ui.loginError.textContent = '';
    ui.loginButton.disabled = true;
    if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify({ type: 'hello', nick }));
    else if (!S.ws || S.ws.readyState !== WebSocket.CONNECTING) { S.attempt = 0; connect(); }
  });

  /* ------------------------------------------------------- server → client */

  const roomOf = (f) => S.views.get(fold(f.room));
  const topicLine = (t, by) => t ? ['Topic: ', t].concat(by ? [' (set by ', nickSpan(by), ')'] : []) : 'No topic is set.';

  const handlers = {
    welcome(f) {
      const first = !S.everWelcomed;
      S.nick = f.nick;
      S.welcomed = S.everWelcomed = true;
      S.attempt = 0;
      setConn('online');
      ui.login.hidden = true;
      ui.app.hidden = false;
      ui.loginButton.disabled = false;
      ui.myNick.textContent = S.nick;
      const have = new Set((f.rooms || []).map(fold));
      (f.rooms || []).forEach(ensureRoom);
      // After a reconnect, re-join the rooms we were in.
      for (const v of rooms()) {
        if (!have.has(v.key)) send({ type: 'join', room: v.name });
      }
      if (!first) sys('Reconnected as ' + S.nick + '.');
      if (S.current === STATUS || !S.views.has(S.current)) switchTo(defaultKey());
      else switchTo(S.current);
      ui.input.focus();
    },

    error(f) {
      const text = f.message || f.code || 'Error';
      if (!S.welcomed) {           // our nick was refused
        ui.app.hidden = true;
        ui.login.hidden = false;
        ui.nickInput.value = S.nick;
        loginDone(S.everWelcomed ? 'Reconnected, but the nickname was refused: ' + text : text);
        return;
      }
      // The history we fetch on every join is a nicety: don't complain if it's off.
      if (f.code === 'history_unavailable' && !S.asked.history.size) return;
      for (const set of Object.values(S.asked)) set.clear();
      S.pendingSwitch = null;
      sys(text, 'err');
    },

    message(f) {
      const v = roomOf(f);
      if (v) addChat(v, f, false);
    },

    private(f) {
      const peer = isMe(f.from) ? f.to : f.from;
      if (!peer) return;
      const v = ensurePm(peer);
      addChat(v, f, false);
      if (S.pendingSwitch === v.key) { S.pendingSwitch = null; switchTo(v.key); }
    },

    join(f) {
      if (isMe(f.nick)) {
        const v = ensureRoom(f.room);
        v.topic = undefined;
        v.users.set(fold(f.nick), f.nick);
        sys('You joined ' + f.room + '.', '', v);
        send({ type: 'history', room: f.room, limit: HISTORY_LIMIT });
        if (S.pendingSwitch === v.key) { S.pendingSwitch = null; switchTo(v.key); }
        else renderSidebar();
        return;
      }
      const v = roomOf(f);
      if (!v) return;
      v.users.set(fold(f.nick), f.nick);
      sys([nickSpan(f.nick), ' joined ' + f.room + '.'], '', v);
      if (v === cur()) renderUsers();
    },

    part(f) {
      const v = roomOf(f);
      if (!v) return;
      const why = f.reason ? ' (' + f.reason + ')' : '';
      if (isMe(f.nick)) {
        removeView(v);
        sys('You left ' + f.room + why + '.');
        return;
      }
      v.users.delete(fold(f.nick));
      sys([nickSpan(f.nick), ' left ' + f.room + why + '.'], '', v);
      if (v === cur()) renderUsers();
    },

    nick(f) {
      const me = isMe(f.old);
      if (me) { S.nick = f.new; ui.myNick.textContent = f.new; }
      let shown = false;
      for (const v of rooms()) {
        if (!v.users.has(fold(f.old))) continue;
        v.users.delete(fold(f.old));
        v.users.set(fold(f.new), f.new);
        sys(me ? 'You are now known as ' + f.new + '.'
               : [nickSpan(f.old), ' is now known as ', nickSpan(f.new), '.'], '', v);
        shown = shown || v === cur();
      }
      const pm = S.views.get('@' + fold(f.old));
      if (pm && !me) {               // follow the peer to their new name
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

    users(f) {
      const v = roomOf(f);
      const nicks = Array.isArray(f.nicks) ? f.nicks : [];
      if (v) {
        v.users = new Map(nicks.map((n) => [fold(n), n]));
        if (v === cur()) renderUsers();
      }
      if (S.asked.who.delete(fold(f.room))) {
        const sorted = nicks.slice().sort((a, b) => fold(a).localeCompare(fold(b)));
        sys('Users in ' + f.room + ' (' + nicks.length + '): ' + sorted.join(', '));
      }
    },

    rooms(f) {
      const list = Array.isArray(f.rooms) ? f.rooms : [];
      sys(list.length ? 'Rooms on this server (click to join):' : 'There are no rooms.');
      for (const r of list) {
        const b = el('button', { type: 'button', className: 'linkish' }, String(r.room));
        b.addEventListener('click', () => { joinRoom(r.room); focusInput(); });
        sys([b, ' — ' + r.users + (r.users === 1 ? ' user' : ' users')].concat(r.topic ? [' — ', r.topic] : []));
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
      else if (t) sys([nickSpan(f.by || '?'), ' changed the topic to: ', t], '', v);
      else sys([nickSpan(f.by || '?'), ' cleared the topic.'], '', v);
      if (v === cur()) renderHeader();
    },

    history(f) {
      const v = roomOf(f);
      if (!v) return;
      const asked = S.asked.history.delete(fold(f.room));
      let added = 0;
      for (const m of Array.isArray(f.messages) ? f.messages : []) {
        if (m && typeof m.text === 'string' && addChat(v, m, true)) added++;
      }
      if (asked && !added) sys('No older messages.', '', v);
    },

    server(f) { sys('Server: ' + f.text, 'notice'); },
  };

  /* ------------------------------------------------------- client → server */

  function joinRoom(name) {
    name = name.trim();
    if (!name) return;
    if (name[0] !== '#') name = '#' + name;
    if (S.views.has(fold(name))) { switchTo(fold(name)); return; }
    if (send({ type: 'join', room: name })) S.pendingSwitch = fold(name);
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

  const HELP = [
    '/join #room — join a room (or switch to it)',
    '/part [#room] [reason] — leave a room (closes a private chat)',
    '/msg NICK TEXT — send a private message',
    '/me ACTION — describe an action',
    '/nick NEW — change your nickname',
    '/topic [TEXT] — show or set the room topic',
    '/who — list users in this room;  /rooms — list all rooms',
    '/history [N] — load N older messages (default 50)',
    '//text — send "/text" literally.  Up/Down recall, Tab completes nicks, Alt+Up/Down switch views.',
  ];

  // Slash commands: fn(args split on whitespace, rest = raw text after the command).
  const commands = {
    join: (args) => (args[0] ? joinRoom(args[0]) : usage('/join #room')),
    part(args, rest) {
      let room = args[0] && args[0][0] === '#' ? args[0] : null;
      const reason = (room ? afterFirst(rest) : rest).trim();
      if (!room && cur().kind === 'pm') { removeView(cur()); return; }
      if (room || (room = needRoom())) send(reason ? { type: 'part', room, reason } : { type: 'part', room });
    },
    msg(args, rest) {
      const text = afterFirst(rest);
      if (!args[0] || !text) usage('/msg NICK TEXT');
      else if (send({ type: 'msg', to: args[0], text })) S.pendingSwitch = '@' + fold(args[0]);
    },
    me: (args, rest) => (rest ? say(rest, true) : usage('/me ACTION')),
    nick: (args) => (args[0] ? send({ type: 'nick', nick: args[0] }) : usage('/nick NEW')),
    topic(args, rest) {
      const room = needRoom();
      if (!room) return;
      if (rest.trim()) { send({ type: 'topic', room, text: rest }); return; }
      if (send({ type: 'topic', room })) S.asked.topic.add(fold(room));
    },
    who(args) {
      const room = args[0] || needRoom();
      if (room && send({ type: 'who', room })) S.asked.who.add(fold(room));
    },
    rooms: () => send({ type: 'rooms' }),
    history(args) {
      const room = needRoom();
      if (!room) return;
      const n = parseInt(args[0], 10);
      const frame = { type: 'history', room, limit: n > 0 ? Math.min(n, HISTORY_MAX) : HISTORY_LIMIT };
      const oldest = cur().pane.querySelector('[data-id]');   // panes are in id order
      if (oldest) frame.before = Number(oldest.dataset.id);
      if (send(frame)) S.asked.history.add(fold(room));
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
    S.sent.push(text);
    if (S.sent.length > 100) S.sent.shift();
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

  ui.reconnectNow.addEventListener('click', () => { S.attempt = 0; connect(); });

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
