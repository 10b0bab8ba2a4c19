// Weft dashboard script. Three jobs, no dependencies:
//  1. Live regions: long-poll the page's own URL with ?live=<index>&hash=<hash>; the server answers when what the
//     region shows has changed (204 after a quiet 30 s). One request in flight per page, backoff on errors, paused
//     while the tab is hidden.
//  2. Filters: search boxes and selects hide rows client-side, and survive live updates.
//  3. Writes: forms and delete buttons call the /v1 HTTP API (the same one the CLI uses) and show its error text
//     inline; nothing is changed unless the API accepted it.
//  4. The datacenter switcher, and API calls made in the page's datacenter.
//  5. With ACLs on: signing in and out (the token is kept in localStorage and sent as X-Consul-Token; a cookie
//     scoped to /ui lets pages render for it), and the access pages (tokens, policies, roles).
'use strict';
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---------------------------------------------------------------- the token

  const TOKEN_KEY = 'weft:token';
  const token = () => { try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; } };

  function keepToken(secret) {
    try { localStorage.setItem(TOKEN_KEY, secret); } catch (e) { /* private mode: the cookie still works */ }
    const secure = location.protocol === 'https:' ? '; Secure' : '';
    document.cookie = `weft-token=${encodeURIComponent(secret)}; Path=/ui; SameSite=Strict${secure}`;
  }

  function forgetToken() {
    try { localStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
    document.cookie = 'weft-token=; Path=/ui; SameSite=Strict; Max-Age=0';
  }

  // ---------------------------------------------------------------- API calls

  class ApiError extends Error {}

  // Calls the API; resolves to the body text, or throws an ApiError carrying the API's own message.
  // The datacenter the page shows (/ui/<dc>/...): API calls go to it, so a federated datacenter's page, passed on
  // by this agent, reads and writes there rather than here.
  const pageDc = decodeURIComponent(location.pathname.split('/')[2] || '');

  function inPageDc(url) {
    if (!pageDc || !url.startsWith('/v1/') || /[?&]dc=/.test(url)) return url;
    return `${url}${url.includes('?') ? '&' : '?'}dc=${encodeURIComponent(pageDc)}`;
  }

  async function api(method, target, body, contentType) {
    const url = inPageDc(target);
    // A custom header makes any cross-origin use of this call need a CORS preflight, which the agent never grants.
    const init = { method, cache: 'no-store', headers: { 'X-Weft-Dashboard': '1' } };
    if (token()) init.headers['X-Consul-Token'] = token();
    if (body !== undefined) {
      init.body = body;
      init.headers['Content-Type'] = contentType || 'application/octet-stream';
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw new ApiError(`Cannot reach the agent (${e.message}). Nothing was changed.`);
    }
    const text = await res.text();
    if (!res.ok) {
      const reason = text.trim() || res.statusText || 'no reason given';
      throw new ApiError(`${res.status} ${res.statusText}: ${reason}`);
    }
    return text;
  }

  function showError(form, message) {
    const el = $('.error', form);
    if (!el) return;
    el.textContent = message;
    el.hidden = false;
    el.focus();
  }

  function clearMessages(form) {
    $$('.error, .saved', form).forEach((el) => { el.hidden = true; el.textContent = el.classList.contains('saved') ? 'Saved.' : ''; });
  }

  function busy(form, on) {
    $$('button[type=submit]', form).forEach((b) => { b.disabled = on; });
    form.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  // KV keys go into the URL path one segment at a time, so '/', '?', '#', '%' and spaces survive.
  const encodeKey = (key) => key.split('/').map(encodeURIComponent).join('/');
  // Browsers resolve '.' and '..' segments (even encoded) before sending, so such keys would be written elsewhere.
  const addressable = (key) => !key.split('/').some((s) => s === '.' || s === '..');

  // ---------------------------------------------------------------- live regions

  const live = $('#live');
  let pending = null; // an update that arrived while a confirmation was open in the region

  function setConnection(ok) {
    const s = $('#live-status');
    if (!s) return;
    s.classList.toggle('offline', !ok);
    s.textContent = ok ? 'Live' : 'Reconnecting…';
  }

  function setLeader(leader) {
    if (leader === null) return;
    const banner = $('#no-leader');
    const tag = $('#leader');
    if (banner) banner.hidden = leader !== '';
    if (tag) {
      tag.textContent = leader ? `Leader ${leader}` : 'No leader';
      tag.classList.toggle('bad', !leader);
    }
  }

  // A selector that finds the "same" focused element in the new HTML, so keyboard users keep their place.
  function focusKey(el) {
    if (!el || !live.contains(el)) return null;
    if (el.id) return `#${CSS.escape(el.id)}`;
    for (const attr of ['href', 'data-delete']) {
      const v = el.getAttribute(attr);
      if (v) return `[${attr}="${CSS.escape(v)}"]`;
    }
    return null;
  }

  function swap(html) {
    if ($('.confirm', live)) { pending = html; return; }
    pending = null;
    const key = focusKey(document.activeElement);
    live.innerHTML = html;
    applyFilter();
    if (key) {
      const el = $(key, live);
      if (el) el.focus({ preventScroll: true });
    }
    document.dispatchEvent(new CustomEvent('weft:updated'));
  }

  async function follow() {
    let index = live.dataset.index || '0';
    let hash = live.dataset.hash || '';
    let failures = 0;
    let last = 0;
    for (;;) {
      while (document.hidden) {
        await new Promise((r) => document.addEventListener('visibilitychange', r, { once: true }));
      }
      // At most four updates a second, however busy the cluster is.
      const gap = 250 - (Date.now() - last);
      if (gap > 0) await sleep(gap);
      last = Date.now();
      try {
        const url = `${location.pathname}?live=${encodeURIComponent(index)}&hash=${encodeURIComponent(hash)}`;
        const res = await fetch(url, { cache: 'no-store', headers: { Accept: 'text/html' } });
        setLeader(res.headers.get('x-weft-leader'));
        if (res.headers.get('x-weft-signed-out')) {
          // The token stopped resolving (deleted or expired): the sign-in page says so.
          forgetToken();
          location.reload();
          return;
        }
        if (res.status === 204) {
          index = res.headers.get('x-weft-index') || index;
        } else if (res.ok) {
          const html = await res.text();
          index = res.headers.get('x-weft-index') || index;
          hash = res.headers.get('x-weft-hash') || '';
          live.dataset.index = index;
          live.dataset.hash = hash;
          swap(html);
        } else {
          throw new Error(`HTTP ${res.status}`);
        }
        failures = 0;
        setConnection(true);
      } catch (e) {
        failures += 1;
        setConnection(false);
        await sleep(Math.min(1000 * 2 ** (failures - 1), 15000));
      }
    }
  }

  // ---------------------------------------------------------------- filters

  const filterForm = $('form[data-filter]');

  function applyFilter() {
    if (!filterForm || !live) return;
    const q = (filterForm.elements.q ? filterForm.elements.q.value : '').trim().toLowerCase();
    const selects = $$('select', filterForm).filter((s) => s.value);
    const rows = $$('[data-row]', live);
    let shown = 0;
    for (const row of rows) {
      const ok = (!q || (row.dataset.search || '').includes(q))
        && selects.every((s) => row.dataset[s.name] === s.value);
      row.hidden = !ok;
      if (ok) shown += 1;
    }
    const none = $('.no-match', live);
    if (none) none.hidden = shown > 0 || rows.length === 0;
    const count = $('[data-count]');
    if (count) count.textContent = shown === rows.length ? `${rows.length} total` : `${shown} of ${rows.length} shown`;
  }

  function rememberFilter() {
    const params = new URLSearchParams();
    for (const el of filterForm.elements) {
      if (el.name && el.value) params.set(el.name, el.value);
    }
    const qs = params.toString();
    history.replaceState(null, '', qs ? `${location.pathname}?${qs}` : location.pathname);
  }

  if (filterForm) {
    filterForm.addEventListener('input', () => { applyFilter(); rememberFilter(); });
    filterForm.addEventListener('submit', (ev) => ev.preventDefault());
  }

  // ---------------------------------------------------------------- deletes, confirmed inline

  function confirmDelete(btn) {
    const box = document.createElement('span');
    box.className = 'confirm';
    box.setAttribute('role', 'group');
    box.setAttribute('aria-label', 'Confirm deletion');
    const question = document.createElement('span');
    question.className = 'confirm-q';
    question.textContent = `Delete ${btn.dataset.what || 'this'}?`;
    const yes = document.createElement('button');
    yes.type = 'button';
    yes.className = 'button small danger';
    yes.textContent = 'Yes, delete';
    yes.dataset.confirmYes = '';
    const no = document.createElement('button');
    no.type = 'button';
    no.className = 'button small';
    no.textContent = 'Cancel';
    const err = document.createElement('span');
    err.className = 'error inline';
    err.setAttribute('role', 'alert');
    err.hidden = true;
    box.append(question, ' ', yes, ' ', no, err);
    btn.hidden = true;
    btn.after(box);
    const close = () => {
      box.remove();
      btn.hidden = false;
      btn.focus();
      if (pending) swap(pending);
    };
    no.addEventListener('click', close);
    box.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') close(); });
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      try {
        await api('DELETE', btn.dataset.delete);
        if (btn.dataset.then) { location.assign(btn.dataset.then); return; }
        box.remove();
        btn.hidden = false;
        if (pending) swap(pending);
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
        yes.disabled = false;
      }
    });
    yes.focus();
  }

  document.addEventListener('click', (ev) => {
    const del = ev.target.closest('[data-delete]');
    if (del) { ev.preventDefault(); confirmDelete(del); }
  });

  // ---------------------------------------------------------------- intentions

  const precedence = (src, dst) => (dst === '*' ? 6 : 9) - (src === '*' ? 1 : 0);

  const iform = $('form[data-intention-form]');
  if (iform) {
    let original = {};
    try { original = JSON.parse(iform.dataset.original || '{}'); } catch (e) { original = {}; }
    const f = iform.elements;
    const showPrecedence = () => {
      const out = $('[data-precedence]', iform);
      if (out) out.textContent = precedence(f.source.value.trim(), f.destination.value.trim());
    };
    iform.addEventListener('input', showPrecedence);
    iform.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearMessages(iform);
      const checked = $('input[name=action]:checked', iform);
      const action = checked ? checked.value : '';
      busy(iform, true);
      try {
        if (iform.dataset.mode === 'edit') {
          // The exact endpoint keeps the pair; L7 permissions survive unless allow/deny replaces them.
          const body = {
            SourceType: original.SourceType || 'consul',
            Action: action,
            Permissions: action ? [] : (original.Permissions || []),
            Description: f.description.value,
            Meta: original.Meta || {},
          };
          await api('PUT', iform.dataset.api, JSON.stringify(body), 'application/json');
        } else {
          // The legacy create refuses a pair that already has an intention, so creating never overwrites.
          const body = {
            SourceName: f.source.value.trim(),
            DestinationName: f.destination.value.trim(),
            Action: action,
            Description: f.description.value,
          };
          await api('POST', '/v1/connect/intentions', JSON.stringify(body), 'application/json');
        }
        location.assign(iform.dataset.return);
      } catch (e) {
        showError(iform, e.message);
      } finally {
        busy(iform, false);
      }
    });
  }

  // ---------------------------------------------------------------- KV

  const kvCreate = $('form[data-kv-create]');
  if (kvCreate) {
    const f = kvCreate.elements;
    const valueField = $('[data-value-field]', kvCreate);
    const folderMode = () => { if (valueField) valueField.hidden = f.key.value.endsWith('/'); };
    kvCreate.addEventListener('input', folderMode);
    folderMode();
    kvCreate.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearMessages(kvCreate);
      const key = (kvCreate.dataset.prefix || '') + f.key.value;
      if (!addressable(key)) {
        showError(kvCreate, 'Keys with "." or ".." path segments cannot be sent in a URL (browsers resolve them); use the CLI or /v1/txn. Nothing was written.');
        return;
      }
      const folder = key.endsWith('/');
      busy(kvCreate, true);
      try {
        // ?cas=0 writes only if the key does not exist yet: creating never overwrites.
        const ok = await api('PUT', `/v1/kv/${encodeKey(key)}?cas=0`, folder ? '' : f.value.value);
        if (ok.trim() !== 'true') {
          showError(kvCreate, `"${key}" already exists; open it to edit it. Nothing was written.`);
          return;
        }
        location.assign(kvCreate.dataset.uiBase + encodeKey(key));
      } catch (e) {
        showError(kvCreate, e.message);
      } finally {
        busy(kvCreate, false);
      }
    });
  }

  const kvEdit = $('form[data-kv-edit]');
  if (kvEdit) {
    kvEdit.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearMessages(kvEdit);
      const url = kvEdit.dataset.api;
      busy(kvEdit, true);
      try {
        // ?cas=<index this page loaded> refuses the write if someone else changed the key meanwhile.
        const q = `?cas=${encodeURIComponent(kvEdit.dataset.cas)}&flags=${encodeURIComponent(kvEdit.dataset.flags || '0')}`;
        const ok = await api('PUT', url + q, kvEdit.elements.value.value);
        if (ok.trim() !== 'true') {
          showError(kvEdit, 'Not saved: the key was changed or deleted since this page loaded it. The current value is shown above; reload to edit it.');
          return;
        }
        const now = JSON.parse(await api('GET', url));
        if (Array.isArray(now) && now[0]) kvEdit.dataset.cas = now[0].ModifyIndex;
        const saved = $('.saved', kvEdit);
        if (saved) saved.hidden = false;
      } catch (e) {
        showError(kvEdit, e.message);
      } finally {
        busy(kvEdit, false);
      }
    });
  }

  // ---------------------------------------------------------------- signing in and out

  const login = $('form[data-login]');
  if (login) {
    // A page that signed the viewer out forgets the token that no longer works.
    if (login.hasAttribute('data-signed-out')) forgetToken();
    login.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearMessages(login);
      const secret = login.elements.secret.value.trim();
      busy(login, true);
      try {
        // Checked before it is kept: an unknown secret is refused here with the API's text ("ACL not found").
        const res = await fetch(inPageDc('/v1/acl/token/self'), {
          cache: 'no-store',
          headers: { 'X-Weft-Dashboard': '1', 'X-Consul-Token': secret },
        });
        const text = await res.text();
        if (!res.ok) throw new ApiError(`${res.status} ${res.statusText}: ${text.trim() || 'the agent refused the token'}`);
        keepToken(secret);
        location.assign(login.dataset.next || login.dataset.home);
      } catch (e) {
        showError(login, e instanceof ApiError ? e.message : `Cannot reach the agent (${e.message}).`);
      } finally {
        busy(login, false);
      }
    });
  }

  document.addEventListener('click', (ev) => {
    const out = ev.target.closest('[data-sign-out]');
    if (out) {
      forgetToken();
      location.assign(out.dataset.signOut);
      return;
    }
    const inLink = ev.target.closest('a[data-sign-in]');
    if (inLink) {
      ev.preventDefault();
      location.assign(`${inLink.getAttribute('href')}?next=${encodeURIComponent(location.pathname)}`);
    }
  });

  // ---------------------------------------------------------------- access controls

  const aclPage = $('[data-acl-page]');
  if (aclPage) initAcls(aclPage);

  function initAcls(page) {
    const kind = page.dataset.kind;
    const locked = page.hasAttribute('data-locked');
    const list = $('[data-acl-list]', page);
    const editor = $('[data-acl-editor]', page);
    const form = $('form[data-acl-form]', page);
    const f = form.elements;
    const title = $('[data-acl-editor-title]', page);
    const createTitle = title.textContent;
    const names = (v) => (v || '').split(',').map((x) => x.trim()).filter(Boolean);
    const joined = (links) => (links || []).map((l) => l.Name || l.ServiceName || l.TemplateName).join(', ');
    const el = (tag, text, cls) => {
      const e = document.createElement(tag);
      if (text !== undefined) e.textContent = text;
      if (cls) e.className = cls;
      return e;
    };
    const apiBase = { tokens: '/v1/acl/token', policies: '/v1/acl/policy', roles: '/v1/acl/role' }[kind];
    const idOf = (item) => (kind === 'tokens' ? item.AccessorID : item.ID);

    function columns(item) {
      if (kind === 'tokens') {
        return [item.AccessorID, item.Description || '', joined(item.Policies), joined(item.Roles),
          joined(item.ServiceIdentities), item.ExpirationTime ? new Date(item.ExpirationTime).toLocaleString() : 'never'];
      }
      if (kind === 'policies') return [item.Name, item.Description || '', (item.Datacenters || []).join(', ') || 'all'];
      return [item.Name, item.Description || '', joined(item.Policies), joined(item.ServiceIdentities)];
    }
    const heads = {
      tokens: ['AccessorID', 'Description', 'Policies', 'Roles', 'Service identities', 'Expires'],
      policies: ['Name', 'Description', 'Datacenters'],
      roles: ['Name', 'Description', 'Policies', 'Service identities'],
    }[kind];

    async function load() {
      let items;
      try {
        items = JSON.parse(await api('GET', `${apiBase === '/v1/acl/policy' ? '/v1/acl/policies' : `${apiBase}s`}`));
      } catch (e) {
        list.replaceChildren(el('p', e.message, 'error'));
        return;
      }
      const count = $('[data-count]');
      if (count) count.textContent = `${items.length} total`;
      if (!items.length) { list.replaceChildren(el('p', `No ${kind} yet.`, 'muted')); return; }
      const table = el('table', undefined, 'list acl');
      const head = el('tr');
      for (const h of heads) { const th = el('th', h); th.scope = 'col'; head.append(th); }
      const actionsHead = el('th'); actionsHead.append(el('span', 'Actions', 'sr')); head.append(actionsHead);
      const thead = el('thead'); thead.append(head);
      const tbody = el('tbody');
      for (const item of items) {
        const tr = el('tr');
        tr.dataset.row = '';
        tr.dataset.id = idOf(item);
        columns(item).forEach((c, i) => { const td = el('td', c); td.dataset.label = heads[i]; tr.append(td); });
        const actions = el('td', undefined, 'row-actions');
        const edit = el('button', 'Edit', 'button small');
        edit.type = 'button';
        edit.dataset.aclEdit = idOf(item);
        const del = el('button', 'Delete', 'button small danger');
        del.type = 'button';
        del.dataset.delete = `${apiBase}/${encodeURIComponent(idOf(item))}`;
        del.dataset.what = kind === 'tokens' ? `the token ${idOf(item)}` : `the ${kind === 'roles' ? 'role' : 'policy'} ${item.Name}`;
        del.dataset.then = location.pathname;
        if (locked) { [edit, del].forEach((b) => { b.disabled = true; b.title = $('.notice') ? $('.notice').textContent : 'Read only'; }); }
        actions.append(edit, ' ', del);
        tr.append(actions);
        tbody.append(tr);
      }
      table.append(thead, tbody);
      list.replaceChildren(table);
    }

    function reset() {
      form.reset();
      f.id.value = '';
      title.textContent = createTitle;
      $$('[data-create-only]', form).forEach((x) => { x.hidden = false; });
      clearMessages(form);
      const rulesError = $('[data-rules-error]', form);
      if (rulesError) rulesError.hidden = true;
    }

    async function edit(id) {
      reset();
      try {
        const item = JSON.parse(await api('GET', `${apiBase}/${encodeURIComponent(id)}`));
        f.id.value = id;
        title.textContent = `Edit ${kind === 'tokens' ? `token ${id}` : item.Name}`;
        if (f.name) f.name.value = item.Name || '';
        f.description.value = item.Description || '';
        if (f.rules) f.rules.value = item.Rules || '';
        if (f.policies) f.policies.value = joined(item.Policies);
        if (f.roles) f.roles.value = joined(item.Roles);
        if (f.services) f.services.value = joined(item.ServiceIdentities);
        $$('[data-create-only]', form).forEach((x) => { x.hidden = true; });
        editor.open = true;
        (f.name || f.description).focus();
      } catch (e) {
        editor.open = true;
        showError(form, e.message);
      }
    }

    function body() {
      const b = { Description: f.description.value };
      if (f.name) b.Name = f.name.value.trim();
      if (f.rules) b.Rules = f.rules.value;
      if (f.policies) b.Policies = names(f.policies.value).map((Name) => ({ Name }));
      if (f.roles) b.Roles = names(f.roles.value).map((Name) => ({ Name }));
      if (f.services) b.ServiceIdentities = names(f.services.value).map((ServiceName) => ({ ServiceName }));
      if (f.ttl && f.ttl.value.trim() && !f.id.value) b.ExpirationTTL = f.ttl.value.trim();
      if (f.id.value) b[kind === 'tokens' ? 'AccessorID' : 'ID'] = f.id.value;
      return b;
    }

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearMessages(form);
      const rulesError = $('[data-rules-error]', form);
      if (rulesError) rulesError.hidden = true;
      const id = f.id.value;
      busy(form, true);
      try {
        const url = id ? `${apiBase}/${encodeURIComponent(id)}` : apiBase;
        const saved = JSON.parse(await api('PUT', url, JSON.stringify(body()), 'application/json'));
        reset();
        const note = $('.saved', form);
        note.textContent = kind === 'tokens' && !id
          ? `Created. AccessorID ${saved.AccessorID}; SecretID ${saved.SecretID} (copy it now: it is the token).`
          : 'Saved.';
        note.hidden = false;
        await load();
      } catch (e) {
        // A rule mistake is shown under the rules, where it is (the API names the line).
        if (rulesError && /^400 /.test(e.message) && /rule|line|policy/i.test(e.message)) {
          rulesError.textContent = e.message;
          rulesError.hidden = false;
          f.rules.focus();
        } else {
          showError(form, e.message);
        }
      } finally {
        busy(form, false);
      }
    });
    $('[data-acl-cancel]', form).addEventListener('click', () => { reset(); editor.open = false; });
    page.addEventListener('click', (ev) => {
      const b = ev.target.closest('[data-acl-edit]');
      if (b && !b.disabled) edit(b.dataset.aclEdit);
    });
    load();
  }

  // ---------------------------------------------------------------- datacenters

  // The switcher lists every federated datacenter (the API's list, nearest first) and opens the same section there.
  async function datacenters() {
    const sel = $('[data-dc-switch]');
    if (!sel) return;
    let names = [];
    try { names = JSON.parse(await api('GET', '/v1/catalog/datacenters')); } catch (e) { return; }
    for (const name of names) {
      if (name === sel.value) continue;
      const opt = document.createElement('option');
      opt.textContent = name;
      sel.appendChild(opt);
    }
    sel.disabled = sel.options.length < 2;
    sel.addEventListener('change', () => {
      const section = location.pathname.split('/')[3] || 'services';
      location.assign(`/ui/${encodeURIComponent(sel.value)}/${section}`);
    });
  }

  // ---------------------------------------------------------------- start

  datacenters();
  applyFilter();
  if (live) follow();
})();
