#!/usr/bin/env node
// A KIS market-data client in Node.js, written from the stockmon README contract ("How to gate your
// own implementation") and `stockmon spec show ...` alone: it shares no code with stockmon, so its
// passing the conformance suite shows that the contract is enough to build a conforming program.
//
// Every number below is the spec's (`stockmon spec show CLAUSE --spec 1.0|1.1`); durations are spec
// seconds, turned into real milliseconds with STOCKMON_TIME_SCALE.
//
// Mutants (one behaviour switched off spec, for the exit-1 proof): `--mutant no-ping` sends no
// application ping.

import crypto from 'node:crypto';
import WebSocket from 'ws';

const env = process.env;
const mutantAt = process.argv.indexOf('--mutant');
const MUTANT = mutantAt > 0 ? process.argv[mutantAt + 1] || '' : '';
if (MUTANT && MUTANT !== 'no-ping') {
  process.stderr.write(`node_client: unknown mutant ${MUTANT} (known: no-ping)\n`);
  process.exit(2);
}
const VERSION = env.STOCKMON_SPEC_VERSION || '1.1';
const V11 = VERSION !== '1.0'; // 1.2's broker side is 1.1's
const SCALE = Number(env.STOCKMON_TIME_SCALE || '1') || 1;

// --- the spec's numbers (spec show KA-PING, KA-TIMERS, POL-*, TOKEN-*, WS-SESSION-LIMITS) ---
const PING_INTERVAL_S = 30; // KA-PING interval_s
const IDLE_TIMEOUT_S = 600; // POL-IDLE-RECONNECT idle_timeout_s
const REFRESH_BEFORE_EXPIRY_S = 1800; // TOKEN-KIS-REFRESH refresh_before_expiry_s
const TOKEN_MIN_INTERVAL_S = 60; // TOKEN-KIS-THROTTLE min_interval_s (1.1)
const MAX_REGISTRATIONS = 41; // WS-SESSION-LIMITS max_registrations (1.1)
const IN_USE_BACKOFF_S = 60; // WS-SESSION-LIMITS in_use_backoff_s (1.1)
const KST_OFFSET_S = 32400; // TOKEN-KIS-EXPIRY utc_offset_s
const REST_AUTH_CODES = V11 ? ['IGW00221', 'EGW00121', 'EGW00123'] : ['IGW00221']; // POL-AUTH-FAILED
const THROTTLE_CODE = 'EGW00133';
const WS = {
  subscribed: 'OPSP0000',
  unsubscribed: 'OPSP0001',
  alreadySubscribed: 'OPSP0002',
  notSubscribed: 'OPSP0003',
  maxSubscriptions: 'OPSP0008',
  invalidApproval: 'OPSP0011',
  inUse: 'OPSP8996',
};

// --- spec show rest (kis) ---
const REST = {
  token: '/oauth2/tokenP',
  approval: '/oauth2/Approval',
  quotes: {
    KR: {
      path: '/uapi/domestic-stock/v1/quotations/inquire-price',
      tr_id: 'FHKST01010100',
      price: 'stck_prpr',
    },
    US: { path: '/uapi/overseas-price/v1/quotations/price', tr_id: 'HHDFS00000300', price: 'last' },
  },
};

// --- spec show layouts: the positions of the roles the suite reads ---
const LAYOUTS = {
  H0STCNT0: { type: 'tick', fields: 46, key: 0, time: 1, price: 2, volume: 12, cumulative: 13 },
  HDFSCNT0: { type: 'tick', fields: 26, key: 0, time: 7, price: 11, volume: 19, cumulative: 20 },
  H0STASP0: {
    type: 'orderbook',
    fields: 59,
    key: 0,
    time: 1,
    level: (i) => ({ ask: 3 + i, askQty: 23 + i, bid: 13 + i, bidQty: 33 + i }),
  },
  HDFSASP0: {
    type: 'orderbook',
    fields: 71,
    key: 0,
    time: 6,
    level: (i) => ({ bid: 11 + 6 * i, ask: 12 + 6 * i, bidQty: 13 + 6 * i, askQty: 14 + 6 * i }),
  },
};

const ms = (specSeconds) => (specSeconds * 1000) / SCALE;
const sleep = (realMs) => new Promise((resolve) => setTimeout(resolve, realMs));

function emit(event) {
  process.stdout.write(JSON.stringify({ source: 'kis', ...event }) + '\n');
}
function status(state, reason, extra = {}) {
  emit({ type: 'status', state, reason, ...extra });
}
function log(message) {
  process.stderr.write(`node_client: ${message}\n`);
}

// --- credentials (CRED-ENV): from the environment only, never printed ---
const APP_KEY = env.KIS_APP_KEY;
const APP_SECRET = env.KIS_APP_SECRET;
if (!APP_KEY || !APP_SECRET) {
  log('KIS_APP_KEY and KIS_APP_SECRET must be set');
  process.exit(2);
}
const REST_URL = (env.KIS_REST_URL || '').replace(/\/+$/, '');
const WS_URL = env.KIS_WS_URL || '';
if (!REST_URL || !WS_URL) {
  log('KIS_REST_URL and KIS_WS_URL must be set');
  process.exit(2);
}

const SUBSCRIPTIONS = (env.STOCKMON_SUBSCRIPTIONS || '')
  .split(',')
  .map((pair) => pair.trim())
  .filter(Boolean)
  .map((pair) => {
    const [trId, ...rest] = pair.split(':');
    return { trId, key: rest.join(':') };
  });

// --- the fleet's shared state (TOKEN-KIS-LOCK, WS-SINGLE-SOCKET): Redis when REDIS_URL is set ---
let redis = null;
const REDIS_PREFIX = 'stockmon-node-client:';
const RELEASE_LUA =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const RENEW_LUA =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const ME = crypto.randomUUID();

async function connectRedis() {
  if (!env.REDIS_URL) return;
  const { default: Redis } = await import('ioredis');
  redis = new Redis(env.REDIS_URL, { maxRetriesPerRequest: 3, lazyConnect: true });
  redis.on('error', (error) => log(`redis: ${error.code || 'error'}`));
  await redis.connect();
}

/** Run fn under the named Redis lock (or directly without a fleet). */
async function withLock(name, fn) {
  if (!redis) return fn();
  const key = REDIS_PREFIX + 'lock:' + name;
  const ttl = Math.max(5000, ms(120));
  for (;;) {
    if ((await redis.set(key, ME, 'PX', ttl, 'NX')) === 'OK') break;
    await sleep(Math.min(200, Math.max(10, ms(1))));
  }
  try {
    return await fn();
  } finally {
    await redis.eval(RELEASE_LUA, 1, key, ME);
  }
}
async function sharedGet(name) {
  if (!redis) return null;
  const raw = await redis.get(REDIS_PREFIX + name);
  return raw ? JSON.parse(raw) : null;
}
async function sharedSet(name, value) {
  if (redis) await redis.set(REDIS_PREFIX + name, JSON.stringify(value));
}

// --- REST ---
async function post(path, body) {
  const response = await fetch(REST_URL + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json; charset=utf-8' },
    body: JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, data };
}

/** Seconds of the spec clock since this process started: the scale turns real time into it. */
const startedReal = Date.now();
const specNow = () => ((Date.now() - startedReal) * SCALE) / 1000;

// Token state. In a fleet the token and its expiry live in Redis, the expiry as a real epoch (ms).
let token = null; // { value, expiresAtMs }
let lastIssueAttemptMs = 0;
let refreshTimer = null;

function expiryFrom(data, receivedMs) {
  // TOKEN-KIS-EXPIRY: expires_in and access_token_token_expired, the earliest wins. The KST wall clock
  // field is on the mock's clock, whose "now" we do not know, so it only bounds expires_in when it is
  // plausibly on ours (scale 1).
  let expiresMs = receivedMs + ms(Number(data.expires_in));
  const stamp = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)$/.exec(data.access_token_token_expired || '');
  if (stamp && SCALE === 1) {
    const [, y, mo, d, h, mi, s] = stamp.map(Number);
    const utcMs = Date.UTC(y, mo - 1, d, h, mi, s) - KST_OFFSET_S * 1000;
    expiresMs = Math.min(expiresMs, utcMs);
  }
  return expiresMs;
}

/** POST /oauth2/tokenP, waiting out the issuance throttle (1.1) instead of hammering. */
async function issueToken() {
  for (;;) {
    if (V11) {
      const wait = lastIssueAttemptMs + ms(TOKEN_MIN_INTERVAL_S) - Date.now();
      if (wait > 0) await sleep(wait);
    }
    lastIssueAttemptMs = Date.now();
    if (redis) await sharedSet('last-issue', lastIssueAttemptMs);
    const { status: code, data } = await post(REST.token, {
      grant_type: 'client_credentials',
      appkey: APP_KEY,
      appsecret: APP_SECRET,
    });
    if (code === 200 && data && data.access_token) {
      return { value: data.access_token, expiresAtMs: expiryFrom(data, lastIssueAttemptMs) };
    }
    const reason = data ? data.error_code || data.msg_cd || '' : '';
    const text = data ? data.error_description || data.msg1 || '' : '';
    status('error', `${reason} ${text} (token HTTP ${code})`.trim());
    if (reason !== THROTTLE_CODE) {
      // Not the throttle: wait a minute of spec time all the same, never hammer.
      await sleep(ms(TOKEN_MIN_INTERVAL_S));
    }
  }
}

function inRefreshWindow(t) {
  return Date.now() >= t.expiresAtMs - ms(REFRESH_BEFORE_EXPIRY_S);
}

/** The current token: the fleet's when one is fresh, else a new one issued under the lock. */
async function getToken({ force = false, stale = null } = {}) {
  if (!force && token && !inRefreshWindow(token)) return token.value;
  const fresh = await withLock('token', async () => {
    if (redis) {
      const shared = await sharedGet('token');
      // Another process may have issued while we waited for the lock.
      if (shared && !inRefreshWindow(shared) && (!force || shared.value !== stale)) return shared;
      const lastIssue = await sharedGet('last-issue');
      if (lastIssue) lastIssueAttemptMs = Math.max(lastIssueAttemptMs, lastIssue);
    } else if (!force && token && !inRefreshWindow(token)) {
      return token;
    }
    const issued = await issueToken();
    await sharedSet('token', issued);
    return issued;
  });
  token = fresh;
  scheduleRefresh();
  return token.value;
}

/** TOKEN-KIS-REFRESH: inside the 30-minute window before the announced expiry, not earlier. */
function scheduleRefresh() {
  if (refreshTimer) clearTimeout(refreshTimer);
  const windowOpens = token.expiresAtMs - ms(REFRESH_BEFORE_EXPIRY_S);
  // A little inside the window (a tenth of it), so the refresh is never early.
  const at = windowOpens + ms(REFRESH_BEFORE_EXPIRY_S / 10);
  refreshTimer = setTimeout(
    () => {
      getToken().catch((error) => log(`refresh failed: ${error.message}`));
    },
    Math.max(0, at - Date.now()),
  );
  refreshTimer.unref?.();
}

/** One authenticated GET; POL-AUTH-FAILED: on an auth code refresh the token, retry this request once. */
async function authenticatedGet(quote, query) {
  for (let attempt = 0; ; attempt++) {
    const bearer = await getToken();
    const url = `${REST_URL}${quote.path}?${new URLSearchParams(query)}`;
    const response = await fetch(url, {
      headers: {
        'content-type': 'application/json; charset=utf-8',
        authorization: `Bearer ${bearer}`,
        appkey: APP_KEY,
        appsecret: APP_SECRET,
        tr_id: quote.tr_id,
        custtype: 'P',
      },
    });
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (data && data.rt_cd === '0') return data;
    const code = data ? data.msg_cd || data.error_code || '' : '';
    const message = data ? data.msg1 || data.error_description || '' : '';
    status('error', `${code} ${message} (HTTP ${response.status})`.trim());
    if (attempt === 0 && REST_AUTH_CODES.includes(code)) {
      await getToken({ force: true, stale: bearer });
      continue;
    }
    return null;
  }
}

/** REST at start: the current price of every subscribed key, once. */
async function fetchQuotes() {
  const seen = new Set();
  for (const { trId, key } of SUBSCRIPTIONS) {
    if (seen.has(key)) continue;
    seen.add(key);
    const us = trId.startsWith('HDFS');
    const quote = us ? REST.quotes.US : REST.quotes.KR;
    // A US realtime key is D + exchange (3 letters) + symbol, e.g. DNASAAPL -> EXCD NAS, SYMB AAPL.
    const query = us
      ? { AUTH: '', EXCD: key.slice(1, 4), SYMB: key.slice(4) }
      : { FID_COND_MRKT_DIV_CODE: 'J', FID_INPUT_ISCD: key };
    const data = await authenticatedGet(quote, query);
    if (data && data.output) {
      status('quote', `${key} ${data.output[quote.price]}`);
    }
  }
}

// --- WebSocket approval key (WS-APPROVAL-KEY), shared by the fleet ---
let approvalKey = null;
async function getApprovalKey({ force = false } = {}) {
  if (!force && approvalKey) return approvalKey;
  const stale = approvalKey;
  approvalKey = await withLock('approval', async () => {
    const shared = await sharedGet('approval');
    if (shared && (!force || shared !== stale)) return shared;
    for (;;) {
      const { status: code, data } = await post(REST.approval, {
        grant_type: 'client_credentials',
        appkey: APP_KEY,
        secretkey: APP_SECRET,
      });
      if (code === 200 && data && data.approval_key) {
        await sharedSet('approval', data.approval_key);
        return data.approval_key;
      }
      const reason = data ? data.msg_cd || data.error_code || '' : '';
      status('error', `${reason} (approval HTTP ${code})`.trim());
      await sleep(ms(10));
    }
  });
  return approvalKey;
}

// --- the market-data socket ---
let socket = null;
let stopping = false;
let pingTimer = null;
let idleTimer = null;
let lastInboundMs = 0;
let reconnectPlanned = null; // { delayMs, newApprovalKey } once a close was decided
const ciphers = new Map(); // tr_id -> { key, iv } from the subscribe ack
let registered = new Set(); // tr_id:key registered on this session
let releaseRetried = new Set(); // POL-ALREADY-SUBSCRIBED: once per key and session
let awaitingResubscribe = new Set();

function packet(trType, trId, key) {
  return JSON.stringify({
    header: { approval_key: approvalKey, custtype: 'P', tr_type: trType, 'content-type': 'utf-8' },
    body: { input: { tr_id: trId, tr_key: key } },
  });
}

function send(text) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(text);
}

function subscribeAll() {
  let count = 0;
  for (const { trId, key } of SUBSCRIPTIONS) {
    if (V11 && count >= MAX_REGISTRATIONS) {
      status('error', `${WS.maxSubscriptions} not sent: ${SUBSCRIPTIONS.length} subscriptions, ${MAX_REGISTRATIONS} per session`);
      break;
    }
    send(packet('1', trId, key));
    count++;
  }
}

function number(text) {
  const value = Number(text);
  return Number.isFinite(value) ? value : 0;
}

function decrypt(trId, payload) {
  const cipher = ciphers.get(trId);
  if (!cipher) return null;
  const decipher = crypto.createDecipheriv('aes-256-cbc', Buffer.from(cipher.key), Buffer.from(cipher.iv));
  return Buffer.concat([decipher.update(Buffer.from(payload, 'base64')), decipher.final()]).toString('utf8');
}

/** PKT-DATA-FRAME: enc|tr_id|NNN|records, fields joined by ^, NNN records per frame. */
function onDataFrame(text) {
  const parts = text.split('|');
  if (parts.length < 4) return;
  const [enc, trId, countText] = parts;
  let payload = parts.slice(3).join('|');
  if (enc === '1') {
    payload = decrypt(trId, payload);
    if (payload === null) return;
  }
  const layout = LAYOUTS[trId];
  if (!layout) return;
  const count = Number(countText) || 1;
  const fields = payload.split('^');
  const width = Math.floor(fields.length / count) || fields.length;
  for (let r = 0; r < count; r++) {
    const f = fields.slice(r * width, (r + 1) * width);
    if (f.length <= layout.time) continue;
    if (layout.type === 'tick') {
      emit({
        type: 'tick',
        tr_id: trId,
        key: f[layout.key],
        time: f[layout.time],
        price: number(f[layout.price]),
        volume: number(f[layout.volume]),
        cumulative_volume: number(f[layout.cumulative]),
      });
    } else {
      const asks = [];
      const bids = [];
      for (let i = 0; i < 10; i++) {
        const p = layout.level(i);
        asks.push([number(f[p.ask]), number(f[p.askQty])]);
        bids.push([number(f[p.bid]), number(f[p.bidQty])]);
      }
      emit({ type: 'orderbook', tr_id: trId, key: f[layout.key], time: f[layout.time], asks, bids });
    }
  }
}

function onControlFrame(text, message) {
  const header = message.header || {};
  if (header.tr_id === 'PINGPONG') {
    // KA-SERVER-PINGPONG (1.1): the server's own ping carries datetime and is echoed as text once;
    // a reflection of our ping (no datetime) is never answered (no ping storm).
    if (V11 && header.datetime !== undefined) send(text);
    return;
  }
  const body = message.body || {};
  const code = body.msg_cd || '';
  const trId = header.tr_id;
  const key = header.tr_key;
  const id = `${trId}:${key}`;
  if (code === WS.subscribed) {
    registered.add(id);
    if (body.output && body.output.key && body.output.iv) {
      ciphers.set(trId, { key: body.output.key, iv: body.output.iv });
    }
    return;
  }
  if (code === WS.unsubscribed || code === WS.notSubscribed) {
    registered.delete(id);
    if (awaitingResubscribe.has(id)) {
      awaitingResubscribe.delete(id);
      send(packet('1', trId, key));
    }
    if (code === WS.notSubscribed) status('error', `${code} ${body.msg1 || ''}`.trim());
    return;
  }
  if (body.rt_cd === '0') return;
  // ERR-WS-BODY: every error the broker reports is surfaced with its code.
  status('error', `${code} ${body.msg1 || ''}`.trim(), { tr_id: trId, key });
  if (code === WS.alreadySubscribed) {
    // POL-ALREADY-SUBSCRIBED: release the key, then subscribe again once the release is answered.
    if (!releaseRetried.has(id)) {
      releaseRetried.add(id);
      awaitingResubscribe.add(id);
      send(packet('2', trId, key));
    }
  } else if (V11 && code === WS.invalidApproval) {
    // POL-AUTH-FAILED (1.1, WebSocket): new approval key, reconnect, resubscribe.
    planReconnect(0, true);
  } else if (V11 && code === WS.inUse) {
    // WS-SESSION-LIMITS: close, back off, reconnect; never a second socket.
    status('reconnecting', `${code} ${body.msg1 || ''}`.trim(), { backoff_s: IN_USE_BACKOFF_S });
    planReconnect(ms(IN_USE_BACKOFF_S), false);
  }
}

function onMessage(data) {
  lastInboundMs = Date.now(); // KA-TIMERS: every frame received resets last-inbound
  const text = data.toString('utf8');
  if (text.startsWith('0') || text.startsWith('1')) {
    onDataFrame(text);
    return;
  }
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    status('error', `unparsable frame (${text.length} chars)`);
    return;
  }
  onControlFrame(text, message);
}

function stopTimers() {
  clearInterval(pingTimer);
  clearInterval(idleTimer);
  pingTimer = null;
  idleTimer = null;
}

/** Close the socket and reopen it after delayMs: the only action allowed on loss (WS-SINGLE-SOCKET). */
function planReconnect(delayMs, newApprovalKey) {
  if (reconnectPlanned || stopping) return;
  reconnectPlanned = { delayMs, newApprovalKey };
  stopTimers();
  if (socket) {
    socket.close();
    // A peer that never answers the close handshake: terminate after a second of spec time.
    const current = socket;
    setTimeout(() => current.terminate(), Math.max(50, ms(1))).unref?.();
  } else {
    afterClose();
  }
}

async function afterClose() {
  socket = null;
  stopTimers();
  if (stopping) return;
  const plan = reconnectPlanned || { delayMs: Math.max(20, ms(1)), newApprovalKey: false };
  reconnectPlanned = null;
  if (plan.delayMs > 0) await sleep(plan.delayMs);
  if (stopping) return;
  if (plan.newApprovalKey) await getApprovalKey({ force: true });
  openSocket();
}

function openSocket() {
  if (socket || stopping) return; // never two sockets
  registered = new Set();
  releaseRetried = new Set();
  awaitingResubscribe = new Set();
  const ws = new WebSocket(WS_URL);
  socket = ws;
  ws.on('open', () => {
    lastInboundMs = Date.now();
    status('connected', 'kis websocket open');
    subscribeAll();
    if (MUTANT !== 'no-ping') {
      // KA-PING: every 30 s of spec time; KA-HEARTBEAT: the heartbeat timer is reset by sending.
      pingTimer = setInterval(() => send(JSON.stringify({ header: { tr_id: 'PINGPONG' } })), ms(PING_INTERVAL_S));
    }
    // POL-IDLE-RECONNECT: nothing received for longer than the idle timeout -> close, then open.
    idleTimer = setInterval(
      () => {
        if (Date.now() - lastInboundMs > ms(IDLE_TIMEOUT_S)) {
          status('reconnecting', `idle for more than ${IDLE_TIMEOUT_S} s`);
          planReconnect(0, false);
        }
      },
      Math.max(10, ms(1)),
    );
  });
  ws.on('message', onMessage);
  ws.on('error', (error) => log(`websocket: ${error.code || error.message}`));
  ws.on('close', () => {
    if (socket !== ws) return;
    if (!reconnectPlanned && !stopping) status('reconnecting', 'kis websocket closed');
    afterClose();
  });
}

// --- the fleet's socket: one holder at a time, a standby takes over when the holder's lease lapses ---
async function holdSocketLease() {
  if (!redis) return;
  const key = REDIS_PREFIX + 'socket';
  const lease = 2000;
  for (;;) {
    if ((await redis.set(key, ME, 'PX', lease, 'NX')) === 'OK') break;
    await sleep(250);
    if (stopping) return;
  }
  const renew = setInterval(() => {
    redis.eval(RENEW_LUA, 1, key, ME, lease).catch(() => {});
  }, lease / 4);
  renew.unref?.();
}

async function main() {
  await connectRedis();
  const rest = getToken().then(fetchQuotes);
  const stream = (async () => {
    await getApprovalKey();
    await holdSocketLease();
    if (!stopping) openSocket();
  })();
  await Promise.all([
    rest.catch((error) => status('error', `rest: ${error.message}`)),
    stream.catch((error) => status('error', `websocket: ${error.message}`)),
  ]);
}

async function shutdown() {
  if (stopping) return;
  stopping = true;
  stopTimers();
  const hard = setTimeout(() => process.exit(0), 3000);
  hard.unref?.();
  try {
    if (socket) socket.terminate();
    if (redis) {
      await redis.eval(RELEASE_LUA, 1, REDIS_PREFIX + 'socket', ME).catch(() => {});
      redis.disconnect();
    }
  } finally {
    process.exit(0);
  }
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

main().catch((error) => {
  status('error', `fatal: ${error.message}`);
  process.exit(1);
});
