/*!
 * Leadflow chat widget: dependency-free, no build step (ES2020).
 *
 *   <script src="https://HOST/widget.js" data-site="demo" data-flow="solar-quote" defer></script>
 *
 * Optional attributes (README, "Embed the widget"):
 *   data-mode="bubble|inline|page" (a launcher in a corner, the default; the chat inside
 *   the element data-target="#id"; the whole page), data-position="right|left",
 *   data-open="true" (open the bubble at once), data-title, data-accent, data-text
 *   (colours: text on the accent; contrast checked against WCAG AA, 4.5:1), data-font,
 *   data-locale="en|de|fr|es" (else navigator.language), data-pace (ms per character a
 *   bubble waits behind a typing indicator; 0: none) and data-pace-max (its cap, ms),
 *   data-preview="TOKEN" (play a flow draft: a token of POST /api/v1/flows/preview),
 *   data-instant="false" (wait for the socket: no instant opening).
 * The accent can also be themed with the CSS custom property `--leadflow-accent` on
 * `#leadflow-widget`.
 *
 * Speaks the WebSocket protocol of docs/protocol.md with the gateway at the same
 * origin as this script (`/ws`); one beacon per page view and per open (`/beacon`,
 * no cookies). Lead field values and typed answers are never logged. Flow text is
 * rendered as DOM nodes (a Markdown subset), never as HTML.
 */
(function () {
  'use strict';

  const HOST_ID = 'leadflow-widget';
  const PROTOCOL_VERSION = 1;
  const PING_INTERVAL_MS = 25000;
  const PONG_TIMEOUT_MS = 10000;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const RETRY_LIMIT = 5;
  const MAX_CONTEXT_CHARS = 500;
  const MAX_FIELD_CHARS = 200;
  const GOING_AWAY = 1001; // with reason IDLE_REASON: idle; reconnect when the visitor acts
  const IDLE_REASON = 'idle timeout';
  const POLICY_VIOLATION = 1008;
  const SERVICE_RESTART = 1012; // a planned restart: reconnect after the hint, quietly
  const RESTART_HINT_MAX_MS = 30000;
  const UNREACHABLE_AFTER = 3; // failed first connections before the visitor is told
  const WARM_MS = 15000; // a socket opened on intent (hover, focus) waits this long for the click
  // Errors for a command that the server refused but still counted (its seq is used up).
  const CONSUMING_ERRORS = new Set(['wrong_node', 'unknown_button', 'invalid_lead', 'completed']);

  if (document.getElementById(HOST_ID)) {
    return; // embedded twice: keep the first one
  }

  // ---------------------------------------------------------------- strings

  // The widget's own words (flow texts come from the flow), by language; data-locale or
  // the browser's language picks one, English otherwise.
  const STRINGS = {
    en: {
      title: 'Chat with us', open: 'Open chat', close: 'Close chat', min: 'Minimise chat',
      log: 'Conversation', you: 'You: ', typing: 'Typing…', connecting: 'Connecting…',
      reconnecting: 'Reconnecting…', off: 'The assistant is not available right now.',
      moment: 'One moment…', wrong: 'Something went wrong.', send: 'Send', sending: 'Sending…',
      skip: 'Skip', skipped: 'Skipped', other: 'Other', answer: 'Your answer',
      placeholder: 'Type your answer…', choose: 'Choose an answer', details: 'Your details',
      sent: 'Details sent', again: 'Start again', required: ' is required.',
      tick: 'Please tick this box to continue.', email: 'Enter a valid email address, like name@example.com.',
      phone: 'Enter a valid phone number, e.g. +44 20 7946 0000.', number: 'Enter a number.',
      contact: 'Please give an email address or a phone number.', image: 'Image', back: 'Change answer',
    },
    de: {
      title: 'Chatten Sie mit uns', open: 'Chat öffnen', close: 'Chat schließen', min: 'Chat minimieren',
      log: 'Unterhaltung', you: 'Sie: ', typing: 'Schreibt…', connecting: 'Verbinde…',
      reconnecting: 'Verbinde erneut…', off: 'Der Assistent ist gerade nicht verfügbar.',
      moment: 'Einen Moment…', wrong: 'Etwas ist schiefgelaufen.', send: 'Senden', sending: 'Sende…',
      skip: 'Überspringen', skipped: 'Übersprungen', other: 'Andere', answer: 'Ihre Antwort',
      placeholder: 'Ihre Antwort…', choose: 'Wählen Sie eine Antwort', details: 'Ihre Angaben',
      sent: 'Angaben gesendet', again: 'Neu beginnen', required: ' ist erforderlich.',
      tick: 'Bitte setzen Sie das Häkchen, um fortzufahren.',
      email: 'Geben Sie eine gültige E-Mail-Adresse ein, z. B. name@example.com.',
      phone: 'Geben Sie eine gültige Telefonnummer ein, z. B. +49 30 1234567.', number: 'Geben Sie eine Zahl ein.',
      contact: 'Bitte geben Sie eine E-Mail-Adresse oder Telefonnummer an.', image: 'Bild', back: 'Antwort ändern',
    },
    fr: {
      title: 'Discutons', open: 'Ouvrir le chat', close: 'Fermer le chat', min: 'Réduire le chat',
      log: 'Conversation', you: 'Vous : ', typing: 'En train d’écrire…', connecting: 'Connexion…',
      reconnecting: 'Reconnexion…', off: 'L’assistant n’est pas disponible pour le moment.',
      moment: 'Un instant…', wrong: 'Une erreur est survenue.', send: 'Envoyer', sending: 'Envoi…',
      skip: 'Passer', skipped: 'Passé', other: 'Autre', answer: 'Votre réponse',
      placeholder: 'Votre réponse…', choose: 'Choisissez une réponse', details: 'Vos coordonnées',
      sent: 'Coordonnées envoyées', again: 'Recommencer', required: ' est obligatoire.',
      tick: 'Cochez cette case pour continuer.', email: 'Saisissez une adresse e-mail valide, comme nom@example.com.',
      phone: 'Saisissez un numéro de téléphone valide, p. ex. +33 1 23 45 67 89.', number: 'Saisissez un nombre.',
      contact: 'Indiquez une adresse e-mail ou un numéro de téléphone.', image: 'Image', back: 'Modifier la réponse',
    },
    es: {
      title: 'Hable con nosotros', open: 'Abrir chat', close: 'Cerrar chat', min: 'Minimizar chat',
      log: 'Conversación', you: 'Usted: ', typing: 'Escribiendo…', connecting: 'Conectando…',
      reconnecting: 'Reconectando…', off: 'El asistente no está disponible en este momento.',
      moment: 'Un momento…', wrong: 'Algo salió mal.', send: 'Enviar', sending: 'Enviando…',
      skip: 'Omitir', skipped: 'Omitido', other: 'Otra', answer: 'Su respuesta',
      placeholder: 'Escriba su respuesta…', choose: 'Elija una respuesta', details: 'Sus datos',
      sent: 'Datos enviados', again: 'Empezar de nuevo', required: ' es obligatorio.',
      tick: 'Marque esta casilla para continuar.', email: 'Introduzca un correo válido, como nombre@example.com.',
      phone: 'Introduzca un teléfono válido, p. ej. +34 912 345 678.', number: 'Introduzca un número.',
      contact: 'Indique un correo electrónico o un teléfono.', image: 'Imagen', back: 'Cambiar respuesta',
    },
  };

  function strings(locale) {
    const lang = String(locale || '').slice(0, 2).toLowerCase();
    return STRINGS[lang] || STRINGS.en;
  }

  const script =
    document.currentScript || document.querySelector('script[src*="widget.js"][data-flow]');
  if (!script) {
    return;
  }
  const data = script.dataset;
  const config = {
    site: data.site || 'demo',
    flow: data.flow || '',
    open: data.open === 'true',
    preview: data.preview || '',
    mode: /^(inline|page)$/.test(data.mode) ? data.mode : 'bubble',
    target: data.target || '',
    left: data.position === 'left',
    accent: data.accent || '',
    text: data.text || '',
    font: data.font || '',
    pace: num(data.pace, 25),
    paceMax: num(data.paceMax, 1600),
    instant: data.instant !== 'false' && !data.preview,
  };
  const T = strings(data.locale || navigator.language);
  config.title = data.title || T.title;
  if (!config.flow) {
    console.error('Leadflow: the widget\'s script has no data-flow attribute: add the id of a published flow.');
    return;
  }
  const docked = config.mode !== 'bubble'; // inline or full page: always open, no launcher
  if (matchMedia('(prefers-reduced-motion: reduce)').matches) config.pace = 0;

  function num(value, fallback) {
    const n = Number(value);
    return value !== undefined && value !== '' && n >= 0 && n <= 60000 ? n : fallback;
  }
  // a preview's session is its token's own (the signature's tail tells tokens apart)
  const previewKey = config.preview ? ':preview:' + config.preview.slice(-16) : '';
  const storageKey = 'leadflow:' + config.site + ':' + config.flow + previewKey;
  const openKey = storageKey + ':open';

  // `name` next to this script (the gateway's /ws, /beacon)
  function sibling(name) {
    const url = new URL(script.src, window.location.href);
    url.pathname = url.pathname.replace(/[^/]*$/, name);
    url.search = '';
    url.hash = '';
    return url.toString();
  }

  function socketUrl() {
    return state.home || sibling('ws').replace(/^http/, 'ws'); // home: another region's (moved)
  }

  // ---------------------------------------------------------------- storage

  function loadSession() {
    try {
      const raw = window.localStorage.getItem(storageKey);
      if (!raw) return null;
      const saved = JSON.parse(raw);
      if (saved && typeof saved.token === 'string' && saved.token) {
        return {
          token: saved.token,
          lastSeq: Number(saved.lastSeq) || 0,
          ack: Number(saved.ack) || 0,
          home: typeof saved.home === 'string' && /^wss?:\/\//.test(saved.home) ? saved.home : null,
        };
      }
    } catch (_err) {
      /* storage unavailable or corrupt: start afresh */
    }
    return null;
  }

  function saveSession() {
    if (!state.token) return;
    try {
      window.localStorage.setItem(
        storageKey,
        JSON.stringify({ token: state.token, lastSeq: state.lastSeq, ack: state.ack, home: state.home })
      );
    } catch (_err) {
      /* private mode, quota: the conversation just won't survive a reload */
    }
  }

  function clearSession() {
    try {
      window.localStorage.removeItem(storageKey);
    } catch (_err) {
      /* ignore */
    }
  }

  function rememberOpen(open) {
    try {
      if (open) window.sessionStorage.setItem(openKey, '1');
      else window.sessionStorage.removeItem(openKey);
    } catch (_err) {
      /* ignore */
    }
  }

  function wasOpen() {
    try {
      return window.sessionStorage.getItem(openKey) === '1';
    } catch (_err) {
      return false;
    }
  }

  // ---------------------------------------------------------------- visitor context

  function detectDevice() {
    const ua = navigator.userAgent || '';
    const touch = (navigator.maxTouchPoints || 0) > 1;
    if (
      /iPad|Tablet|PlayBook|Silk|Kindle/i.test(ua) ||
      (/Android/i.test(ua) && !/Mobile/i.test(ua)) ||
      (/Macintosh/i.test(ua) && touch)
    ) {
      return 'tablet';
    }
    if (/Mobi|iPhone|iPod|Android|Windows Phone|BlackBerry|Opera Mini/i.test(ua)) {
      return 'mobile';
    }
    if (navigator.userAgentData && navigator.userAgentData.mobile) {
      return 'mobile';
    }
    const width = Math.min(window.innerWidth || 0, (window.screen && window.screen.width) || Infinity);
    if (touch && width > 0 && width < 600) return 'mobile';
    if (touch && width > 0 && width < 1100) return 'tablet';
    return 'desktop';
  }

  function clip(value) {
    return String(value || '').slice(0, MAX_CONTEXT_CHARS);
  }

  // The page's context does not change while it is open: computed once, early (init
  // asks for it when the page is idle), so that the launcher's click does not wait for
  // it: the first Intl.DateTimeFormat() of a page loads locale data (tens of ms on a
  // busy machine), on the path to the first message.
  let context = null;
  function visitorContext() {
    if (!context) context = readContext();
    return context;
  }

  function readContext() {
    const params = new URLSearchParams(window.location.search);
    let timeZone = 'UTC';
    try {
      timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    } catch (_err) {
      /* very old engines */
    }
    return {
      device: detectDevice(),
      referrer: clip(document.referrer),
      utm_source: clip(params.get('utm_source')),
      utm_medium: clip(params.get('utm_medium')),
      utm_campaign: clip(params.get('utm_campaign')),
      locale: clip(data.locale || navigator.language || 'en'), // data-locale: the flow's language too
      time_zone: clip(timeZone),
    };
  }

  // ---------------------------------------------------------------- state

  const saved = loadSession();
  const state = {
    conversationId: null,
    token: saved ? saved.token : null,
    ack: saved ? saved.ack : 0,
    home: saved ? saved.home : null, // the conversation's region's socket, once moved there
    lastSeq: 0, // highest message seq rendered in *this* DOM (empty after a page load)
    connected: false,
    ws: null,
    everConnected: false,
    attempt: 0,
    reconnectTimer: null,
    pingTimer: null,
    pongTimer: null,
    retryTimer: null,
    retries: 0,
    stopped: false, // closed with 1008: do not reconnect
    idle: false, // closed as idle (no command for a while): reconnect on the next action
    warm: false, // the socket was opened on intent: its handshake waits for the panel
    warmTimer: null,
    open: false,
    handshake: null, // 'start' | 'resume' while waiting for a session frame
    startId: null, // the pending start's id: every retry of it names the same conversation
    paging: 0, // message frames still due in a resume page that said `more`
    inflight: null, // {frame, ui} of the command awaiting its reply
    actionable: null, // the newest unanswered question / lead form: {seq, node, kind, el, ...}
    burst: 0, // messages of a resume still due: shown at once (history), never paced
    lead: false, // the next message answers the visitor: shown at once, the rest paced
    failures: 0, // connection attempts that failed before any opened
    opened: false, // the open beacon of this page view was sent
    boot: null, // the instant opening's messages, shown, until the start's reply confirms them
    held: null, // the start's reply while it is compared with them
  };
  const queue = []; // messages received, not yet shown (pacing), in seq order
  let paceTimer = null;
  const ANSWERABLE = new Set(['question', 'lead_form', 'input']);
  const INPUT_TYPES = { number: 'number', email: 'email', phone: 'tel', date: 'date' };
  const DEFAULT_ACCENT = '#4f46e5';
  const AA = 4.5;
  const LIGHT = [255, 255, 255];
  const DARK = [17, 24, 39];

  // ---------------------------------------------------------------- DOM

  // compact (one rule a line): the minified widget stays under 15 KB gzipped
  const CSS = `
:host{all:initial}
*,*::before,*::after{box-sizing:border-box}
.lf-root{--lf-accent:var(--leadflow-accent,#4f46e5);--lf-accent-text:#fff;--lf-bg:#ffffff;--lf-surface:#f3f4f6;--lf-text:#111827;--lf-muted:#6b7280;--lf-border:#e5e7eb;--lf-danger:#b91c1c;font-family:var(--lf-font,system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif);font-size:15px;line-height:1.45;color:var(--lf-text)}
.lf-sr{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}
button{font:inherit}
:focus-visible{outline:3px solid var(--lf-accent);outline-offset:2px}
.lf-launcher{position:fixed;right:20px;bottom:20px;z-index:2147483001;width:60px;height:60px;border-radius:50%;border:0;cursor:pointer;background:var(--lf-accent);color:var(--lf-accent-text);box-shadow:0 8px 24px rgba(17,24,39,.25);display:grid;place-items:center;transition:transform .15s ease,box-shadow .15s ease}
.lf-launcher:hover{transform:translateY(-2px);box-shadow:0 12px 28px rgba(17,24,39,.3)}
.lf-launcher svg{width:28px;height:28px}
.lf-launcher .lf-icon-close{display:none}
.lf-open .lf-launcher .lf-icon-chat{display:none}
.lf-open .lf-launcher .lf-icon-close{display:block}
.lf-panel{position:fixed;right:20px;bottom:92px;z-index:2147483000;width:370px;height:min(600px,calc(100vh - 120px));background:var(--lf-bg);border-radius:16px;overflow:hidden;box-shadow:0 16px 48px rgba(17,24,39,.22),0 0 0 1px rgba(17,24,39,.06);display:flex;flex-direction:column;animation:lf-in .18s ease-out}
.lf-panel[hidden]{display:none}
@keyframes lf-in{from{opacity:0;transform:translateY(12px) scale(.98)}
to{opacity:1;transform:none}}
.lf-header{display:flex;align-items:center;gap:10px;padding:14px 14px 14px 18px;background:var(--lf-accent);color:var(--lf-accent-text)}
.lf-title{margin:0;font-size:16px;font-weight:600;flex:1}
.lf-minimise{width:34px;height:34px;border-radius:8px;border:0;cursor:pointer;background:rgba(255,255,255,.16);color:inherit;display:grid;place-items:center}
.lf-minimise:hover{background:rgba(255,255,255,.28)}
.lf-minimise svg{width:18px;height:18px}
.lf-status{font-size:13px;color:var(--lf-muted);background:#fffbeb;border-bottom:1px solid #fde68a;padding:6px 18px}
.lf-status:empty{display:none}
.lf-log{flex:1;overflow-y:auto;padding:16px;display:flex;flex-direction:column;gap:8px;background:var(--lf-bg);scroll-behavior:smooth}
.lf-msg{max-width:85%;padding:10px 14px;border-radius:16px;white-space:pre-wrap;overflow-wrap:anywhere;animation:lf-pop .16s ease-out}
@keyframes lf-pop{from{opacity:0;transform:translateY(4px)}
to{opacity:1;transform:none}}
.lf-bot{align-self:flex-start;background:var(--lf-surface);border-bottom-left-radius:4px}
.lf-me{align-self:flex-end;background:var(--lf-accent);color:var(--lf-accent-text);border-bottom-right-radius:4px}
.lf-choices{display:flex;flex-wrap:wrap;gap:8px;margin:2px 0 6px}
.lf-choice{border:1.5px solid var(--lf-accent);color:var(--lf-accent);background:var(--lf-bg);border-radius:999px;padding:8px 14px;cursor:pointer;text-align:left;transition:background .12s ease,color .12s ease}
.lf-choice:hover:not(:disabled){background:var(--lf-accent);color:var(--lf-accent-text)}
.lf-choice:disabled{cursor:default;opacity:.45}
.lf-choices[data-answered]{display:none}
.lf-form{border:1px solid var(--lf-border);border-radius:14px;padding:14px;margin:2px 0 6px;background:var(--lf-bg)}
.lf-form fieldset{border:0;margin:0;padding:0;min-width:0}
.lf-field{margin-bottom:12px}
.lf-field>label:not(.lf-check){display:block;font-size:13px;font-weight:600;margin-bottom:4px}
.lf-req{color:var(--lf-danger);margin-left:2px}
.lf-input{width:100%;font:inherit;color:inherit;padding:9px 11px;border-radius:10px;border:1px solid #d1d5db;background:#fff}
.lf-input:focus{border-color:var(--lf-accent);outline:2px solid var(--lf-accent);outline-offset:0}
.lf-input[aria-invalid="true"]{border-color:var(--lf-danger)}
.lf-check{display:flex;gap:8px;align-items:flex-start;font-size:13px;cursor:pointer}
.lf-check input{margin:2px 0 0;width:18px;height:18px;accent-color:var(--lf-accent);flex:none}
.lf-check input[aria-invalid="true"]{outline:2px solid var(--lf-danger);outline-offset:1px}
.lf-error{color:var(--lf-danger);font-size:13px;margin-top:4px}
.lf-error:empty{display:none}
.lf-submit{width:100%;border:0;border-radius:10px;padding:10px 14px;cursor:pointer;background:var(--lf-accent);color:var(--lf-accent-text);font-weight:600}
.lf-submit:disabled{opacity:.6;cursor:progress}
.lf-end{display:flex;justify-content:center;margin-top:6px}
.lf-restart{border:1px solid var(--lf-border);background:var(--lf-bg);color:var(--lf-muted);border-radius:999px;padding:5px 12px;font-size:13px;cursor:pointer}
.lf-restart:hover{color:var(--lf-text);border-color:#9ca3af}
.lf-back{align-self:flex-end}
.lf-notice{margin:0 16px 10px;padding:8px 12px;border-radius:10px;font-size:13px;background:#fef2f2;color:var(--lf-danger);border:1px solid #fecaca}
.lf-notice:empty{display:none}
.lf-footer{font-size:11px;color:var(--lf-muted);text-align:center;padding:6px 0 10px}
.lf-msg a{color:inherit;font-weight:600}
.lf-msg img{display:block;max-width:100%;height:auto;border-radius:10px;margin-top:6px}
.lf-typing{align-self:flex-start;display:flex;gap:4px;padding:14px;background:var(--lf-surface);border-radius:16px;border-bottom-left-radius:4px}
.lf-typing i{width:7px;height:7px;border-radius:50%;background:var(--lf-muted);animation:lf-dot 1s infinite}
.lf-typing i:nth-child(2){animation-delay:.15s}
.lf-typing i:nth-child(3){animation-delay:.3s}
@keyframes lf-dot{50%{opacity:.3;transform:translateY(-3px)}}
.lf-ask{display:flex;flex-direction:column;gap:8px;margin:2px 0 6px}
.lf-row{display:flex;gap:8px}
.lf-row .lf-input{flex:1}
.lf-row .lf-submit,.lf-skip{width:auto}
.lf-skip{border:1px solid var(--lf-border);background:var(--lf-bg);color:var(--lf-text);border-radius:10px;padding:8px 12px;cursor:pointer;align-self:flex-start}
.lf-ask[data-answered]{display:none}
.lf-left .lf-launcher,.lf-left .lf-panel{right:auto;left:20px}
.lf-docked .lf-launcher{display:none}
.lf-inline .lf-panel{position:relative;right:auto;left:auto;bottom:auto;z-index:auto;width:100%;height:var(--leadflow-height,560px);animation:none}
.lf-page .lf-panel{inset:0;width:100%;height:100%;border-radius:0;animation:none}
@media (max-width:480px){.lf-bubble .lf-panel{right:0;left:0;bottom:0;width:100%;height:100%;height:100dvh;border-radius:0}
.lf-open .lf-launcher{display:none}}
@media (prefers-reduced-motion:reduce){.lf-panel,.lf-msg,.lf-typing i{animation:none}
.lf-log{scroll-behavior:auto}
.lf-launcher{transition:none}}
`;

  const ICON_CHAT =
    '<svg class="lf-icon-chat" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" ' +
    'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">' +
    '<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/></svg>';
  const ICON_CLOSE =
    '<svg class="lf-icon-close" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2.2" ' +
    'stroke-linecap="round" aria-hidden="true" focusable="false"><path d="M6 6l12 12M18 6L6 18"/></svg>';
  const ICON_MINIMISE =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2.2" ' +
    'stroke-linecap="round" aria-hidden="true" focusable="false"><path d="M6 9l6 6 6-6"/></svg>';

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (name === 'className') node.className = value;
        else node.setAttribute(name, value === true ? '' : String(value));
      }
    }
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  const host = el('div', { id: HOST_ID });
  const shadow = host.attachShadow({ mode: 'open' });
  const style = el('style');
  style.textContent = CSS;
  const root = el('div', { className: 'lf-root lf-' + config.mode + (docked ? ' lf-docked' : '') + (config.left ? ' lf-left' : '') });

  const panel = el('section', {
    className: 'lf-panel',
    id: 'lf-panel',
    role: 'dialog',
    'aria-label': config.title,
    hidden: true,
  });
  const header = el('header', { className: 'lf-header' });
  const title = el('h2', { className: 'lf-title' }, config.title);
  const minimise = el('button', { type: 'button', className: 'lf-minimise', 'aria-label': T.min });
  minimise.innerHTML = ICON_MINIMISE;
  header.append(title);
  if (!docked) header.append(minimise);
  const statusLine = el('div', { className: 'lf-status', role: 'status', 'aria-live': 'polite' });
  const log = el('div', {
    className: 'lf-log',
    role: 'log',
    'aria-live': 'polite',
    'aria-label': T.log,
    tabindex: '0',
  });
  const notice = el('div', { className: 'lf-notice', role: 'status', 'aria-live': 'polite' });
  const footer = el('div', { className: 'lf-footer' }, 'Powered by Leadflow');
  const typing = el('div', { className: 'lf-typing', 'aria-hidden': 'true', title: T.typing });
  typing.append(el('i'), el('i'), el('i'));
  panel.append(header, statusLine, log, notice, footer);

  const launcher = el('button', {
    type: 'button',
    className: 'lf-launcher',
    'aria-label': T.open,
    'aria-expanded': 'false',
    'aria-controls': 'lf-panel',
  });
  launcher.innerHTML = ICON_CHAT + ICON_CLOSE;

  root.append(launcher, panel);
  shadow.append(style, root);

  // Inline: into the page's element data-target (nothing, and an error for the owner,
  // when there is none); otherwise at the end of <body>.
  function mount() {
    let parent = document.body;
    if (config.mode === 'inline') {
      parent = config.target && document.querySelector(config.target);
      if (!parent) {
        console.error('Leadflow: data-mode="inline" needs data-target naming an element of the page (e.g. data-target="#chat"); found none for ' + JSON.stringify(config.target) + '.');
        return false;
      }
    }
    parent.appendChild(host);
    theme();
    return true;
  }

  function setStatus(text) {
    statusLine.textContent = text || '';
  }

  function setNotice(text) {
    notice.textContent = text || '';
  }

  function scrollToEnd() {
    log.scrollTop = log.scrollHeight;
  }

  // Scroll the transcript (never the host page) so that `node` is visible.
  function reveal(node) {
    const box = node.getBoundingClientRect();
    const view = log.getBoundingClientRect();
    if (box.top < view.top || box.bottom > view.bottom) log.scrollTop += box.top - view.top - 48;
  }

  // ---------------------------------------------------------------- theme

  // data-accent, data-text (text on the accent) and data-font, or --leadflow-accent from the
  // page: a pair that fails WCAG AA (4.5:1: the accent as text on the white panel, the text
  // on the accent) is replaced by a readable one and the owner warned in the console.
  function theme() {
    const fromPage = getComputedStyle(host).getPropertyValue('--leadflow-accent').trim();
    let accent = config.accent || fromPage || DEFAULT_ACCENT;
    let a = rgb(accent);
    const onPanel = a ? contrast(a, LIGHT) : 0;
    if (onPanel < AA) {
      warn('accent ' + accent, onPanel, 'on the white panel', DEFAULT_ACCENT);
      accent = DEFAULT_ACCENT;
      a = rgb(accent);
    }
    let text = config.text || '#ffffff';
    const t = rgb(text);
    const onAccent = t ? contrast(t, a) : 0;
    if (onAccent < AA) {
      const fallback = contrast(LIGHT, a) >= contrast(DARK, a) ? '#ffffff' : '#111827';
      warn('text colour ' + text, onAccent, 'on the accent ' + accent, fallback);
      text = fallback;
    }
    root.style.setProperty('--lf-accent', accent);
    root.style.setProperty('--lf-accent-text', text);
    if (config.font) root.style.setProperty('--lf-font', config.font);
  }

  function warn(what, ratio, where, fallback) {
    console.warn(
      'Leadflow: the ' + what + ' has a contrast of ' + ratio.toFixed(2) + ':1 ' + where +
        ', below the 4.5:1 of WCAG AA; using ' + fallback + ' instead. Pick a colour with more contrast.'
    );
  }

  // A CSS colour as [r, g, b] (a canvas normalises it), null if it is none or translucent.
  function rgb(colour) {
    const ctx = document.createElement('canvas').getContext('2d');
    if (!ctx) return null;
    ctx.fillStyle = '#010203';
    ctx.fillStyle = colour;
    const hex = /^#([0-9a-f]{6})$/.exec(ctx.fillStyle);
    if (!hex || hex[1] === '010203') return null;
    const n = parseInt(hex[1], 16);
    return [n >> 16, (n >> 8) & 255, n & 255];
  }

  function luminance(c) {
    const [r, g, b] = c.map((v) => (v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }

  function contrast(x, y) {
    const [hi, lo] = [luminance(x), luminance(y)].sort((p, q) => q - p);
    return (hi + 0.05) / (lo + 0.05);
  }

  // ---------------------------------------------------------------- beacons, misconfiguration

  // "view" once per page view, "open" once per page view the visitor opened the chat in:
  // a POST without cookies or identifiers, counted per site, flow and day (previews never).
  function beacon(kind) {
    if (config.preview || !navigator.sendBeacon) return;
    try {
      navigator.sendBeacon(sibling('beacon'), JSON.stringify({ site: config.site, flow: config.flow, kind }));
    } catch (_err) {
      /* counting is best effort */
    }
  }

  // An embed that cannot work (unknown site or flow, a page its site does not allow, a bad
  // preview token): the visitor gets a neutral sentence, the owner the cause and the fix.
  function unavailable(problem) {
    console.error('Leadflow: ' + problem);
    state.stopped = true;
    retireActionable();
    setStatus('');
    setNotice(T.off);
    const ws = state.ws;
    if (ws) {
      ws.onclose = null;
      state.ws = null;
      state.connected = false;
      stopHeartbeat();
      ws.close(1000);
    }
  }

  const MISCONFIGURED = {
    unknown_site: () =>
      'the gateway has no site "' + config.site + '" (data-site): use the id of a site in its sites file.',
    unknown_flow: () =>
      'site "' + config.site + '" has no published flow "' + config.flow +
      '" (data-flow): check the id, publish the flow, and list it in the site\'s flows.',
    origin_not_allowed: () =>
      'this page (' + location.origin + ') may not embed site "' + config.site + '": add the origin to the site\'s origins.',
    invalid_preview: (frame) =>
      'the preview token (data-preview) was refused: ' + frame.message + '. Make a new one (POST /api/v1/flows/preview).',
  };

  // ---------------------------------------------------------------- panel

  function openPanel(moveFocus = true) {
    if (state.open) return;
    state.open = true;
    rememberOpen(true);
    ensureConnected(); // first: the socket's handshake runs while the panel is laid out
    fetchOpening();
    panel.hidden = false;
    root.classList.add('lf-open');
    launcher.setAttribute('aria-label', T.close);
    launcher.setAttribute('aria-expanded', 'true');
    scrollToEnd();
    if (moveFocus) focusCurrent() || minimise.focus({ preventScroll: true });
    if (!state.opened) beacon('open');
    state.opened = true;
    modal();
  }

  function closePanel() {
    if (!state.open || docked) return;
    const hadFocus = shadow.activeElement !== null;
    state.open = false;
    rememberOpen(false);
    panel.hidden = true;
    root.classList.remove('lf-open');
    launcher.setAttribute('aria-label', T.open);
    launcher.setAttribute('aria-expanded', 'false');
    modal();
    if (hadFocus) launcher.focus({ preventScroll: true });
  }

  launcher.addEventListener('click', () => (state.open ? closePanel() : openPanel()));
  // The pointer on the launcher (or the focus, or a touch) announces the click: open the
  // socket now, so that the click only has to send its start (docs/protocol.md).
  for (const intent of ['pointerenter', 'focus', 'touchstart']) {
    launcher.addEventListener(intent, warmUp, { passive: true });
  }
  minimise.addEventListener('click', closePanel);
  root.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && state.open && !docked) {
      event.preventDefault();
      closePanel();
    } else if (event.key === 'Tab' && modal()) {
      trapFocus(event);
    } else if (event.key === 'Enter' || event.key === ' ') {
      hurry();
    }
  });
  panel.addEventListener('pointerdown', hurry);

  // On a small screen the bubble's panel covers the page: it is modal, and Tab cycles
  // through its controls (Escape closes it and gives the focus back to the launcher).
  const small = matchMedia('(max-width: 480px)');
  function modal() {
    const on = !docked && state.open && small.matches;
    panel.setAttribute('aria-modal', on ? 'true' : 'false');
    return on;
  }

  function trapFocus(event) {
    const controls = Array.from(
      panel.querySelectorAll('button:not(:disabled), input:not(:disabled), a[href], [tabindex="0"]')
    ).filter((node) => node.getClientRects().length > 0);
    if (!controls.length) return;
    const first = controls[0];
    const last = controls[controls.length - 1];
    const active = shadow.activeElement;
    if (event.shiftKey ? active === first || !panel.contains(active) : active === last || !panel.contains(active)) {
      event.preventDefault();
      (event.shiftKey ? last : first).focus();
    }
  }

  // Move focus to the first answer button / form field of the current question.
  function focusCurrent() {
    if (!state.open || !state.actionable) return false;
    const target = state.actionable.el.querySelector('input:not(:disabled), button:not(:disabled)');
    if (!target) return false;
    target.focus({ preventScroll: true });
    scrollToEnd();
    return true;
  }

  // A control about to be disabled would drop focus to <body> (where Escape no longer
  // reaches the widget): park it on the transcript until the next question arrives.
  function keepFocus() {
    if (shadow.activeElement) log.focus({ preventScroll: true });
  }

  // ---------------------------------------------------------------- transcript

  // ---------------------------------------------------------------- pacing

  // Messages are shown in the order they came, one after another: the first one that
  // answers the visitor (and a resume's history) at once, each further one after a typing
  // indicator for data-pace ms per character (at most data-pace-max; none under
  // prefers-reduced-motion). A press or a key in the panel shows the rest at once.
  function enqueue(message) {
    const now = state.burst > 0 || state.lead || !config.pace;
    if (state.burst > 0) state.burst -= 1;
    state.lead = false;
    queue.push({ message, wait: now ? 0 : Math.min(config.paceMax, config.pace * String(message.text || '').length) });
    if (!paceTimer) drain();
  }

  function drain() {
    paceTimer = null;
    while (queue.length) {
      const next = queue[0];
      if (next.wait > 0) {
        log.appendChild(typing); // moved to the end if it is shown already
        scrollToEnd();
        paceTimer = setTimeout(drain, next.wait);
        next.wait = 0;
        return;
      }
      queue.shift();
      typing.remove();
      renderMessage(next.message);
    }
  }

  function hurry() {
    if (!paceTimer) return;
    clearTimeout(paceTimer);
    for (const next of queue) next.wait = 0;
    drain();
  }

  function resetTranscript() {
    queue.length = 0;
    clearTimeout(paceTimer);
    paceTimer = null;
    log.textContent = '';
    state.lastSeq = 0;
    state.actionable = null;
    state.inflight = null;
    state.boot = state.held = null; // an instant opening shown is gone with it
    answers.length = 0;
    setNotice('');
  }

  // "Change answer" under the visitor's last answer to a question (docs/protocol.md,
  // Going back): the question is asked again and what followed it leaves the transcript.
  const answers = []; // {bubble, seq}: answers that may still be changed, oldest first
  let backButton = null;
  function placeBack() {
    if (!backButton) {
      backButton = el('button', { type: 'button', className: 'lf-restart lf-back' }, T.back);
      backButton.addEventListener('click', goBack);
    }
    const last = answers[answers.length - 1];
    if (last) last.bubble.after(backButton);
    else backButton.remove();
  }

  function visitorBubble(label, before) {
    const bubble = el('div', { className: 'lf-msg lf-me' });
    bubble.append(el('span', { className: 'lf-sr' }, T.you), document.createTextNode(label));
    if (before) log.insertBefore(bubble, before);
    else log.appendChild(bubble);
    return bubble;
  }

  function retireActionable() {
    const current = state.actionable;
    if (!current) return;
    state.actionable = null;
    for (const control of current.el.querySelectorAll('button, input')) control.disabled = true;
  }

  function renderMessage(message) {
    const seq = Number(message.seq);
    if (!(seq > state.lastSeq)) return; // already shown (re-sent history)
    state.lastSeq = seq;
    const kind = message.kind;
    const image = message.image;
    const src = image && typeof image.src === 'string' && /^https:\/\//i.test(image.src) ? image.src : '';
    if (message.text || src) {
      const bubble = el('div', {
        className: 'lf-msg lf-bot',
        'data-seq': seq,
        'data-kind': kind,
        'data-node': message.node_id,
        'data-done': message.done ? 'true' : null,
      });
      rich(bubble, message.text || '');
      if (src) {
        bubble.appendChild(el('img', { src, alt: String(image.alt || ''), loading: 'lazy', referrerpolicy: 'no-referrer' }));
      }
      log.appendChild(bubble);
    }
    const answered = message.answer !== null && message.answer !== undefined;
    if (ANSWERABLE.has(kind)) {
      retireActionable();
      if (answered) {
        const bubble = visitorBubble(String(message.answer));
        if (kind === 'lead_form') answers.length = 0; // a lead cannot be taken back
        else answers.push({ bubble, seq });
        placeBack();
      } else if (kind === 'question') {
        state.actionable = renderChoices(message);
      } else if (kind === 'input') {
        state.actionable = renderInput(message);
      } else {
        state.actionable = renderForm(message);
      }
    } else if (answered) {
      visitorBubble(String(message.answer));
    }
    if (message.done) {
      retireActionable();
      answers.length = 0;
      placeBack();
      renderRestart();
    }
    scrollToEnd();
    // A new question takes the focus if the visitor is in the widget (never steal it from the page).
    if (state.actionable && state.actionable.seq === seq && shadow.activeElement) focusCurrent();
  }

  // The Markdown subset of flow texts, built as DOM nodes (never HTML): **bold**, *italic*,
  // [label](url) for http(s) and mailto links only (a new tab, no opener, no referrer) and
  // line breaks; anything else stays literal text. A backslash makes the next Markdown
  // character literal (the server escapes a visitor's values inserted by templates so:
  // docs/protocol.md): escaped characters are hidden from the patterns as private-use
  // code points, then shown as themselves.
  const MARK = /\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*|\[([^\]]+)\]\(([^()\s]+)\)/g;
  const ESCAPED = /\\([\\`*_[\]()<>#!~|{}])/g;
  const HIDDEN = /[\uE000-\uE07F]/g;
  const hide = (text) => text.replace(ESCAPED, (_, c) => String.fromCharCode(0xe000 + c.charCodeAt(0)));
  const shown = (text) => text.replace(HIDDEN, (c) => String.fromCharCode(c.charCodeAt(0) - 0xe000));
  function rich(parent, text) {
    hide(String(text))
      .split('\n')
      .forEach((line, i) => {
        if (i) parent.appendChild(el('br'));
        let at = 0;
        for (const m of line.matchAll(MARK)) {
          parent.append(shown(line.slice(at, m.index)));
          if (m[1]) parent.appendChild(el('strong', null, shown(m[1])));
          else if (m[2]) parent.appendChild(el('em', null, shown(m[2])));
          else if (/^(https?:\/\/|mailto:)/i.test(m[4])) {
            const href = shown(m[4]);
            parent.appendChild(el('a', { href, target: '_blank', rel: 'noopener noreferrer' }, shown(m[3])));
          } else parent.append(shown(m[3]));
          at = m.index + m[0].length;
        }
        parent.append(shown(line.slice(at)));
      });
  }

  // A typed answer (kind "input"): a labelled field of its type with its maximum length,
  // choice buttons (plus an "other" field) for a choice, and a skip button if skippable.
  function renderInput(message) {
    const seq = Number(message.seq);
    const spec = message.input || {};
    const type = spec.type || 'text';
    const form = el('form', { className: 'lf-ask', novalidate: true, 'data-seq': seq, 'data-type': type });
    const error = el('div', { className: 'lf-error', id: 'lf-e-' + seq, 'aria-live': 'polite' });
    const current = { seq, node: message.node_id, kind: 'input', el: form, error, field: null };
    if (type === 'choice') {
      const group = el('div', { className: 'lf-choices', role: 'group', 'aria-label': message.text || T.choose });
      for (const choice of spec.choices || []) {
        const button = el('button', { type: 'button', className: 'lf-choice', 'data-choice': choice.id }, choice.label);
        button.addEventListener('click', () => answer(current, choice.id, choice.label));
        group.appendChild(button);
      }
      form.appendChild(group);
    }
    if (type !== 'choice' || spec.other) {
      const id = 'lf-a-' + seq;
      const field = el('input', {
        id,
        type: INPUT_TYPES[type] || 'text',
        name: 'answer',
        className: 'lf-input',
        maxlength: Number(spec.max_length) > 0 ? Number(spec.max_length) : MAX_FIELD_CHARS,
        placeholder: spec.placeholder || T.placeholder,
        autocomplete: type === 'email' ? 'email' : type === 'phone' ? 'tel' : 'off',
        inputmode: type === 'number' ? 'decimal' : null,
        min: type === 'number' ? spec.min : null,
        max: type === 'number' ? spec.max : null,
        step: type === 'number' ? 'any' : null,
        'aria-describedby': error.id,
      });
      field.addEventListener('input', () => askError(current, ''));
      const row = el('div', { className: 'lf-row' });
      row.append(field, el('button', { type: 'submit', className: 'lf-submit' }, T.send));
      form.append(el('label', { for: id, className: 'lf-sr' }, type === 'choice' ? T.other : message.text || T.answer), row);
      current.field = field;
    }
    if (spec.skippable) {
      const skip = el('button', { type: 'button', className: 'lf-skip' }, T.skip);
      skip.addEventListener('click', () => answer(current, null, T.skipped));
      form.appendChild(skip);
    }
    form.appendChild(error);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const field = current.field;
      const value = field ? field.value.trim() : '';
      let problem = '';
      if (!value) problem = T.answer + T.required;
      else if (type === 'number' && !Number.isFinite(Number(value))) problem = T.number;
      else if (type === 'email' && !EMAIL_SHAPE.test(value)) problem = T.email;
      else if (type === 'phone' && !PHONE_SHAPE.test(value)) problem = T.phone;
      if (problem) askError(current, problem);
      else answer(current, value, value);
    });
    log.appendChild(form);
    return current;
  }

  function askError(current, text) {
    current.error.textContent = text;
    if (current.field) {
      if (text) current.field.setAttribute('aria-invalid', 'true');
      else current.field.removeAttribute('aria-invalid');
    }
  }

  function renderChoices(message) {
    const group = el('div', {
      className: 'lf-choices',
      role: 'group',
      'aria-label': message.text || T.choose,
      'data-seq': message.seq,
    });
    const current = { seq: Number(message.seq), node: message.node_id, kind: 'question', el: group };
    for (const button of message.buttons || []) {
      const choice = el('button', { type: 'button', className: 'lf-choice', 'data-button': button.id }, button.label);
      choice.addEventListener('click', () => press(current, button));
      group.appendChild(choice);
    }
    log.appendChild(group);
    return current;
  }

  function renderRestart() {
    const wrap = el('div', { className: 'lf-end' });
    const restart = el('button', { type: 'button', className: 'lf-restart' }, T.again);
    restart.addEventListener('click', startAgain);
    wrap.appendChild(restart);
    log.appendChild(wrap);
  }

  // ---------------------------------------------------------------- lead form

  const EMAIL_SHAPE = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;
  const PHONE_SHAPE = /^\+?[\d\s().-]+$/;

  function renderForm(message) {
    const seq = Number(message.seq);
    const form = el('form', { className: 'lf-form', novalidate: true, 'data-seq': seq });
    const fieldset = el('fieldset');
    const legend = el('legend', { className: 'lf-sr' }, message.text || T.details);
    fieldset.appendChild(legend);
    const inputs = {};
    const current = { seq, node: message.node_id, kind: 'lead_form', el: form, fields: [], inputs };
    for (const spec of message.fields || []) {
      const id = 'lf-f-' + seq + '-' + spec.name;
      const errorId = 'lf-e-' + seq + '-' + spec.name;
      const row = el('div', { className: 'lf-field', 'data-field': spec.name });
      let input;
      if (spec.type === 'consent') {
        input = el('input', { type: 'checkbox', id, name: spec.name, 'aria-required': spec.required ? 'true' : null });
        const label = el('label', { className: 'lf-check', for: id });
        label.append(input, el('span', null, spec.label || spec.name));
        if (spec.required) label.lastChild.appendChild(el('span', { className: 'lf-req', 'aria-hidden': 'true' }, '*'));
        row.appendChild(label);
      } else {
        const label = el('label', { for: id }, spec.label || spec.name);
        if (spec.required) label.appendChild(el('span', { className: 'lf-req', 'aria-hidden': 'true' }, '*'));
        const type = spec.type === 'email' ? 'email' : spec.type === 'phone' ? 'tel' : 'text';
        let autocomplete = 'on';
        if (spec.type === 'email') autocomplete = 'email';
        else if (spec.type === 'phone') autocomplete = 'tel';
        else if (/^(full_?)?name$/i.test(spec.name)) autocomplete = 'name';
        input = el('input', {
          type,
          id,
          name: spec.name,
          className: 'lf-input',
          autocomplete,
          maxlength: MAX_FIELD_CHARS,
          required: spec.required,
          'aria-required': spec.required ? 'true' : null,
          inputmode: spec.type === 'email' ? 'email' : spec.type === 'phone' ? 'tel' : null,
          spellcheck: spec.type === 'text' ? null : 'false',
        });
        row.append(label, input);
      }
      const error = el('div', { className: 'lf-error', id: errorId });
      row.appendChild(error);
      input.addEventListener('input', () => setFieldError(current, spec.name, ''));
      input.addEventListener('change', () => setFieldError(current, spec.name, ''));
      fieldset.appendChild(row);
      inputs[spec.name] = { spec, input, error, errorId };
      current.fields.push(spec);
    }
    const formError = el('div', { className: 'lf-error', id: 'lf-e-' + seq + '-_form', 'aria-live': 'polite' });
    const submit = el('button', { type: 'submit', className: 'lf-submit' }, T.send);
    fieldset.append(formError, submit);
    form.appendChild(fieldset);
    current.formError = formError;
    current.fieldset = fieldset;
    current.submit = submit;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      submitLead(current);
    });
    log.appendChild(form);
    return current;
  }

  function setFieldError(form, name, text) {
    if (name === '_form') {
      form.formError.textContent = text || '';
      return;
    }
    const entry = form.inputs[name];
    if (!entry) {
      if (text) form.formError.textContent = text;
      return;
    }
    entry.error.textContent = text || '';
    if (text) {
      entry.input.setAttribute('aria-invalid', 'true');
      entry.input.setAttribute('aria-describedby', entry.errorId);
    } else {
      entry.input.removeAttribute('aria-invalid');
      entry.input.removeAttribute('aria-describedby');
    }
  }

  function fieldLabel(spec) {
    return spec.label || spec.name;
  }

  function readFields(form) {
    const values = {};
    for (const spec of form.fields) {
      const input = form.inputs[spec.name].input;
      values[spec.name] = spec.type === 'consent' ? (input.checked ? 'true' : 'false') : input.value.trim();
    }
    return values;
  }

  function validateFields(form, values) {
    const errors = {};
    let contactable = false;
    let hasContactField = false;
    for (const spec of form.fields) {
      const value = values[spec.name];
      if (spec.type === 'email' || spec.type === 'phone') hasContactField = true;
      if (spec.type === 'consent') {
        if (spec.required && value !== 'true') errors[spec.name] = T.tick;
        continue;
      }
      if (!value) {
        if (spec.required) errors[spec.name] = fieldLabel(spec) + T.required;
        continue;
      }
      if (spec.type === 'email') {
        if (!EMAIL_SHAPE.test(value)) errors[spec.name] = T.email;
        else contactable = true;
      } else if (spec.type === 'phone') {
        const digits = value.replace(/\D/g, '').length;
        if (!PHONE_SHAPE.test(value) || digits < 6 || digits > 15) {
          errors[spec.name] = T.phone;
        } else {
          contactable = true;
        }
      }
    }
    if (hasContactField && !contactable && Object.keys(errors).length === 0) {
      errors._form = T.contact;
    }
    return errors;
  }

  function showFieldErrors(form, errors, fromServer) {
    for (const spec of form.fields) setFieldError(form, spec.name, '');
    setFieldError(form, '_form', '');
    let first = null;
    for (const [name, text] of Object.entries(errors)) {
      const entry = form.inputs[name];
      const message = fromServer ? sentence(String(text)) : String(text);
      setFieldError(form, name, message);
      if (entry && !first) first = entry.input;
    }
    if (first && state.open) {
      first.focus({ preventScroll: true });
      reveal(first);
    }
  }

  // The server's field messages are fragments ("is not a valid email address"): shown under
  // the field they describe, "This is not a valid email address." reads best.
  function sentence(text) {
    let out = text.trim().replace(/\.$/, '');
    if (/^(is|must|should|needs?)\b/i.test(out)) out = 'This ' + out;
    return out.charAt(0).toUpperCase() + out.slice(1) + '.';
  }

  function setFormBusy(form, busy) {
    form.fieldset.disabled = busy;
    form.submit.textContent = busy ? T.sending : T.send;
  }

  // ---------------------------------------------------------------- commands

  function press(question, button) {
    if (state.inflight || state.actionable !== question) return;
    const frame = { type: 'press', v: PROTOCOL_VERSION, seq: state.ack + 1, node: question.node, button: button.id };
    keepFocus();
    for (const choice of question.el.querySelectorAll('button')) choice.disabled = true;
    question.el.setAttribute('data-answered', '');
    const bubble = visitorBubble(button.label);
    answers.push({ bubble, seq: question.seq });
    placeBack();
    scrollToEnd();
    state.inflight = { frame, question, bubble };
    state.retries = 0;
    if (!send(frame)) ensureConnected(); // sent after the resume
  }

  // An answer to an input node: its value, or skip (value null); the typed text is shown
  // in the transcript but never logged.
  function answer(current, value, shown) {
    if (state.inflight || state.actionable !== current) return;
    const frame = { type: 'answer', v: PROTOCOL_VERSION, seq: state.ack + 1, node: current.node };
    if (value === null) frame.skip = true;
    else frame.value = value;
    askError(current, '');
    keepFocus();
    for (const control of current.el.querySelectorAll('button, input')) control.disabled = true;
    current.el.setAttribute('data-answered', '');
    const bubble = visitorBubble(shown);
    answers.push({ bubble, seq: current.seq });
    placeBack();
    scrollToEnd();
    state.inflight = { frame, question: current, bubble };
    state.retries = 0;
    if (!send(frame)) ensureConnected(); // sent after the resume
  }

  function goBack() {
    hurry();
    const current = state.actionable;
    if (state.inflight || !current) return;
    const frame = { type: 'back', v: PROTOCOL_VERSION, seq: state.ack + 1, node: current.node };
    keepFocus();
    state.inflight = { frame, question: current, bubble: null };
    state.retries = 0;
    if (!send(frame)) ensureConnected(); // sent after the resume
  }

  function submitLead(form) {
    if (state.inflight || state.actionable !== form) return;
    setNotice('');
    const values = readFields(form);
    const errors = validateFields(form, values);
    if (Object.keys(errors).length) {
      showFieldErrors(form, errors, false);
      return;
    }
    showFieldErrors(form, {}, false);
    const frame = { type: 'lead', v: PROTOCOL_VERSION, seq: state.ack + 1, node: form.node, fields: values };
    keepFocus();
    setFormBusy(form, true);
    state.inflight = { frame, question: form, bubble: null };
    state.retries = 0;
    if (!send(frame)) ensureConnected(); // sent after the resume
  }

  // The reply to the in-flight command arrived as bot messages: it was applied.
  function completeInflight() {
    const inflight = state.inflight;
    state.inflight = null;
    state.lead = true; // the reply's first message: at once
    state.retries = 0;
    clearTimeout(state.retryTimer);
    if (inflight && inflight.frame.type === 'lead') {
      const form = inflight.question;
      if (state.actionable === form) state.actionable = null;
      visitorBubble(T.sent, form.el);
      form.el.remove();
      answers.length = 0;
      placeBack();
    }
    if (inflight && inflight.frame.type === 'back') {
      // the question answered last, and all after it, make way for it asked again
      const last = answers.pop();
      let node = last && log.querySelector('[data-seq="' + last.seq + '"]');
      while (node) {
        const next = node.nextSibling;
        node.remove();
        node = next;
      }
      state.actionable = null;
      placeBack();
    }
  }

  // The in-flight command was refused: undo what the visitor saw and let them try again.
  function failInflight() {
    const inflight = state.inflight;
    state.inflight = null;
    state.retries = 0;
    clearTimeout(state.retryTimer);
    if (!inflight) return null;
    const question = inflight.question;
    if (inflight.bubble) {
      inflight.bubble.remove();
      answers.pop();
      placeBack();
    }
    if (state.actionable === question) {
      if (question.kind === 'lead_form') {
        setFormBusy(question, false);
      } else {
        question.el.removeAttribute('data-answered');
        for (const control of question.el.querySelectorAll('button, input')) control.disabled = false;
        if (shadow.activeElement) focusCurrent();
      }
    }
    return inflight;
  }

  function startAgain() {
    keepFocus(); // the button is about to go with the old transcript
    clearSession();
    state.token = null;
    state.conversationId = null;
    state.ack = 0;
    resetTranscript();
    fetchOpening();
    if (state.connected) sendStart();
    else ensureConnected();
  }

  // ---------------------------------------------------------------- instant opening

  // The flow's first reply, fetched while the socket opens and shown at once (docs/protocol.md,
  // The instant opening). The start's reply then confirms it (the same messages: dropped) or
  // replaces it (another version or language: shown instead); commands wait until then.
  let opening = null;
  let due = 0; // messages of the start's reply still to come
  // Fetched early (idle, intent), shown once the panel is open (so pacing plays in view).
  function fetchOpening() {
    const path = 'opening/' + [config.site, config.flow].map(encodeURIComponent).join('/');
    if (!opening && config.instant && !state.token) {
      opening = fetch(sibling(path) + '?locale=' + encodeURIComponent(visitorContext().locale))
        .then((r) => r.ok && r.json())
        .catch(() => null);
    }
    if (opening) opening.then(showOpening);
  }

  function showOpening(doc) {
    if (!doc || !doc.instant || !state.open || state.token || state.lastSeq || queue.length || state.stopped) return;
    state.boot = doc.messages;
    state.lead = true;
    doc.messages.forEach(enqueue);
  }

  function settle() {
    const held = state.held;
    const same = JSON.stringify(held) === JSON.stringify(state.boot);
    state.boot = state.held = null;
    if (!same) {
      resetTranscript(); // and any press on it: the visitor answers the server's question
      state.lead = true;
      held.forEach(enqueue);
    }
    const inflight = state.inflight;
    if (inflight) {
      inflight.frame.seq = state.ack + 1; // 2: the start was command 1
      send(inflight.frame);
    }
  }

  function newStartId() {
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function sendStart() {
    state.handshake = 'start';
    // A start whose reply was lost may still have been applied: its retries carry
    // the same start_id, so the server answers with that conversation, not a new one.
    if (!state.startId) state.startId = newStartId();
    const frame = {
      type: 'start',
      v: PROTOCOL_VERSION,
      site: config.site,
      flow: config.flow,
      context: visitorContext(),
      start_id: state.startId,
    };
    if (config.preview) frame.preview = config.preview;
    send(frame);
  }

  function sendResume() {
    state.handshake = 'resume';
    send({ type: 'resume', v: PROTOCOL_VERSION, token: state.token, last_seq: state.lastSeq });
  }

  function handshake() {
    if (state.token) sendResume();
    else sendStart();
  }

  // ---------------------------------------------------------------- connection

  function send(frame) {
    const ws = state.ws;
    // a command waits for the next resume, or for the start to confirm the instant opening
    if (!ws || ws.readyState !== WebSocket.OPEN || (state.boot && frame.seq)) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  function ensureConnected() {
    if (state.warm) {
      endWarm(); // the visitor acts: the warm socket is the socket
      if (state.connected) handshake(); // else on open
      return;
    }
    if (state.stopped || state.ws || state.reconnectTimer) return;
    connect();
  }

  // A socket before the click, for the visitor who is about to open the panel. No
  // command is sent on it (nothing starts, nothing is resumed) until the panel opens;
  // unused, it is closed after WARM_MS, quietly (no reconnection).
  function warmUp() {
    fetchOpening();
    if (state.open || state.stopped || state.ws || state.reconnectTimer) return;
    state.warm = true;
    state.warmTimer = setTimeout(coolDown, WARM_MS);
    connect();
  }

  function endWarm() {
    state.warm = false;
    clearTimeout(state.warmTimer);
    state.warmTimer = null;
  }

  function coolDown() {
    const ws = state.ws;
    if (!state.warm || !ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000);
    } catch (_err) {
      /* already closing */
    }
    onDisconnect(ws, 1000);
  }

  function connect() {
    state.reconnectTimer = null;
    state.idle = false;
    if (!state.everConnected && !state.warm) setStatus(T.connecting);
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (_err) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.onopen = () => {
      state.connected = true;
      if (state.failures >= UNREACHABLE_AFTER) setNotice('');
      state.everConnected = true;
      setStatus('');
      startHeartbeat();
      if (!state.warm) handshake(); // a warm socket's waits for the panel
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_err) {
        return;
      }
      if (frame && typeof frame === 'object') handleFrame(frame);
    };
    ws.onclose = (event) => onDisconnect(ws, event.code, event.reason);
    ws.onerror = () => {
      /* onclose follows */
    };
  }

  function onDisconnect(ws, code, reason) {
    if (state.ws !== ws) return;
    state.ws = null;
    state.connected = false;
    state.handshake = null;
    state.paging = 0; // the next resume starts from the last message shown
    if (state.held) resetTranscript(); // the start's reply was cut short: resume it all
    stopHeartbeat();
    clearTimeout(state.retryTimer);
    if (state.warm) {
      endWarm(); // never used: the panel, when it opens, connects afresh
      return;
    }
    if (code === POLICY_VIOLATION) {
      state.stopped = true;
      setStatus('');
      setNotice(T.off);
      return;
    }
    if (code === GOING_AWAY && reason === IDLE_REASON) {
      // No command for the server's idle timeout (pings do not count): stay disconnected
      // until the visitor opens the panel, presses or submits; then resume as usual.
      state.idle = true;
      state.attempt = 0;
      setStatus('');
      // A command sent as the server gave up on the socket was never read: the visitor
      // has acted, so resume now and send it again (same seq: applied once).
      if (state.inflight) ensureConnected();
      return;
    }
    if (code === SERVICE_RESTART) {
      // The gateway is restarting (docs/protocol.md): no error for the visitor; come back
      // after its hint plus jitter (through the load balancer: another gateway) and resume.
      const hint = restartHint(reason);
      state.attempt = 0;
      state.reconnectTimer = setTimeout(connect, hint + (Math.random() * hint) / 2);
      return;
    }
    if (!state.everConnected && ++state.failures === UNREACHABLE_AFTER) {
      // A page its site does not allow is refused before the upgrade (403), which a
      // WebSocket cannot tell from a gateway that is down: both are named to the owner.
      console.error(
        'Leadflow: cannot connect to ' + socketUrl() + ': the gateway is unreachable, or refuses this page\'s origin (' +
          location.origin + '): add it to the origins of site "' + config.site + '".'
      );
      setNotice(T.off);
    }
    setStatus(state.everConnected ? T.reconnecting : T.connecting);
    scheduleReconnect();
  }

  // The retry hint of a 1012 close: its reason is {"retry_after_ms": N}.
  function restartHint(reason) {
    try {
      const ms = JSON.parse(reason || '{}').retry_after_ms;
      if (Number.isFinite(ms) && ms >= 0) return Math.min(ms, RESTART_HINT_MAX_MS);
    } catch (_err) {
      /* no hint: the usual backoff base */
    }
    return BACKOFF_BASE_MS;
  }

  function scheduleReconnect() {
    if (state.stopped || state.reconnectTimer) return;
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** state.attempt);
    state.attempt = Math.min(state.attempt + 1, 10);
    const delay = Math.random() * cap; // full jitter
    state.reconnectTimer = setTimeout(connect, delay);
  }

  // Drop a socket that stopped answering and reconnect without waiting for its close handshake.
  function dropSocket() {
    const ws = state.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close();
    } catch (_err) {
      /* already closing */
    }
    onDisconnect(ws, 1006);
  }

  function startHeartbeat() {
    stopHeartbeat();
    state.pingTimer = setInterval(() => {
      if (!send({ type: 'ping', v: PROTOCOL_VERSION })) return;
      clearTimeout(state.pongTimer);
      state.pongTimer = setTimeout(dropSocket, PONG_TIMEOUT_MS);
    }, PING_INTERVAL_MS);
  }

  function stopHeartbeat() {
    clearInterval(state.pingTimer);
    clearTimeout(state.pongTimer);
    state.pingTimer = null;
    state.pongTimer = null;
  }

  window.addEventListener('online', () => {
    if (!state.ws && state.reconnectTimer && !state.stopped) {
      clearTimeout(state.reconnectTimer);
      state.reconnectTimer = null;
      connect();
    }
  });

  // ---------------------------------------------------------------- server frames

  function noteAck(ack) {
    if (Number.isInteger(ack) && ack >= 0) state.ack = ack;
  }

  function handleFrame(frame) {
    switch (frame.type) {
      case 'session':
        return onSession(frame);
      case 'message':
        return onMessage(frame);
      case 'error':
        return onError(frame);
      case 'moved': // the conversation lives in another region: resume it there
        if (typeof frame.url !== 'string' || !/^wss?:\/\//.test(frame.url)) return undefined;
        state.home = frame.url;
        state.attempt = 0;
        saveSession();
        return dropSocket();
      case 'pong':
        clearTimeout(state.pongTimer);
        return undefined;
      default:
        return undefined;
    }
  }

  function onSession(frame) {
    const wasStart = state.handshake === 'start';
    state.handshake = null;
    state.startId = null; // the next start (after "Start again") is a new conversation
    state.attempt = 0;
    state.retries = 0;
    clearTimeout(state.retryTimer);
    state.conversationId = frame.conversation_id || null;
    state.token = frame.token || state.token;
    noteAck(frame.ack);
    if (wasStart) setNotice('');
    state.lead = wasStart;
    state.burst = wasStart ? 0 : Math.max(0, Number(frame.messages) || 0);
    saveSession();
    // A long transcript comes in pages (docs/protocol.md): after this page's messages,
    // resume again from the last one; the in-flight command waits for the last page.
    state.paging = frame.more === true ? Math.max(0, Number(frame.messages) || 0) : 0;
    if (state.boot) {
      state.held = [];
      due = Number(frame.messages) || 0;
      if (!due) settle();
      return;
    }
    if (state.paging > 0) return;
    const inflight = state.inflight;
    if (inflight) {
      // The reply to it may have been lost with the old socket: send it again with the
      // same seq (a retry of the last applied command just repeats its reply).
      if (inflight.frame.seq > state.ack + 1) inflight.frame.seq = state.ack + 1;
      send(inflight.frame);
    }
  }

  function onMessage(frame) {
    noteAck(frame.ack);
    if (state.held) {
      state.held.push(frame.message);
      if (state.held.length >= due) settle();
      return;
    }
    if (state.inflight && state.ack >= state.inflight.frame.seq) completeInflight();
    const message = frame.message;
    if (message && typeof message === 'object') {
      if (Number(message.seq) > state.lastSeq) setNotice('');
      enqueue(message);
    }
    saveSession();
    if (state.paging > 0) {
      state.paging -= 1;
      if (state.paging === 0) sendResume(); // the next page, from the last message shown
    }
  }

  function onError(frame) {
    const code = frame.code;
    const inflight = state.inflight;
    const answersInflight = inflight && !state.boot && (frame.seq === undefined || frame.seq === inflight.frame.seq);
    if (Number.isInteger(frame.ack)) noteAck(frame.ack);
    else if (CONSUMING_ERRORS.has(code) && typeof frame.seq === 'number' && frame.seq > state.ack) {
      state.ack = frame.seq; // the refused command still used its seq up
    }

    if (MISCONFIGURED[code] && !(code === 'invalid_preview' && frame.retryable)) {
      unavailable(MISCONFIGURED[code](frame));
      return;
    }
    if (code === 'invalid_answer' && answersInflight && inflight.question.kind === 'input') {
      const current = inflight.question;
      failInflight(); // the typed value stays in its field
      askError(current, frame.message || T.wrong);
      if (current.field) current.field.focus();
      return;
    }
    if (code === 'invalid_token' || code === 'no_conversation') {
      if (state.handshake === 'resume' || !state.token) {
        // The saved conversation is gone: start a fresh one.
        clearSession();
        state.token = null;
        state.conversationId = null;
        state.ack = 0;
        resetTranscript();
        if (state.connected) sendStart();
      } else {
        sendResume();
      }
      return;
    }
    if (code === 'out_of_order' || code === 'stale_command') {
      if (code === 'stale_command' && answersInflight) failInflight();
      if (state.token) sendResume();
      return;
    }
    if (frame.retryable) {
      const pending = state.handshake;
      if (state.retries < RETRY_LIMIT && (answersInflight || pending)) {
        const delay = Math.random() * Math.min(BACKOFF_MAX_MS, 1000 * 2 ** state.retries);
        state.retries += 1;
        clearTimeout(state.retryTimer);
        state.retryTimer = setTimeout(() => {
          if (pending === 'start') sendStart(); // (a press on the instant opening waits)
          else if (state.inflight) send(state.inflight.frame);
          else if (pending === 'resume' && state.token) sendResume();
        }, delay);
        if (!notice.textContent) setNotice(T.moment);
        return;
      }
    }
    setNotice(frame.message || T.wrong);
    if (code === 'cannot_go_back') {
      answers.length = 0;
      placeBack();
    }
    if (code === 'invalid_lead' && answersInflight && inflight.frame.type === 'lead') {
      const form = inflight.question;
      failInflight();
      showFieldErrors(form, frame.fields || {}, true);
      return;
    }
    if (answersInflight) {
      failInflight();
      if ((code === 'wrong_node' || code === 'completed') && state.token) sendResume();
    }
    if (code === 'conversation_too_long') {
      retireActionable(); // it takes no more answers: offer a fresh conversation
      renderRestart();
    }
  }

  // ---------------------------------------------------------------- public API

  window.Leadflow = Object.freeze({
    open: openPanel,
    close: closePanel,
    state() {
      return {
        conversationId: state.conversationId,
        ack: state.ack,
        lastSeq: state.lastSeq,
        connected: state.connected,
      };
    },
  });

  function init() {
    if (!mount()) return;
    // when the page is idle: the context, and the instant opening (one cacheable GET), so
    // that the panel shows the first question as it opens
    (window.requestIdleCallback || ((fn) => setTimeout(fn, 1)))(() => visitorContext() && fetchOpening());
    beacon('view');
    if (!docked && !config.open && wasOpen()) state.opened = true; // a reload, not an open
    if (docked || config.open || wasOpen()) openPanel(false);
  }

  if (document.body) init();
  else document.addEventListener('DOMContentLoaded', init, { once: true });
})();
