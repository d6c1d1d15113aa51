// The results of a batch-inpaint report, a page at a time, from the data files beside this script.
// Data come as <script> files (BI.items, BI.view, BI.folders), which browsers load from file:// where
// fetch() is refused.
"use strict";
(function () {
  const meta = BI.meta, chunks = {}, views = {}, pending = {};
  let folders = null;
  const state = { view: "all", folder: "", page: 0 };
  let drawing = 0;  // the latest render: an earlier one still loading data draws nothing

  BI.items = (n, rows) => { chunks["items-" + n] = rows; };
  BI.view = (name, indices) => { views[name] = indices; };
  BI.folders = (spans) => { folders = spans; };

  function load(name) {
    if (!pending[name]) {
      pending[name] = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = "data/" + name + ".js";
        script.onload = resolve;
        script.onerror = () => reject(new Error("cannot load data/" + name + ".js"));
        document.head.appendChild(script);
      });
    }
    return pending[name];
  }

  function firstAtLeast(list, value) {  // binary search in a sorted list
    let lo = 0, hi = list.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (list[mid] < value) lo = mid + 1; else hi = mid; }
    return lo;
  }

  async function selection() {  // the global indices the filters choose, as a list or a [start, end) range
    const span = state.folder ? folders[state.folder] : [0, meta.total];
    if (state.view === "all") return { range: span, count: span[1] - span[0] };
    await load("view-" + state.view);
    const all = views[state.view] || [];
    const list = all.slice(firstAtLeast(all, span[0]), firstAtLeast(all, span[1]));
    return { list: list, count: list.length };
  }

  function el(tag, props, ...children) {
    const node = Object.assign(document.createElement(tag), props || {});
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function card(row) {
    const box = el("div", { className: "card" });
    const head = el("div", null, el("span", { className: "key", textContent: row.k }),
                    el("span", { className: "status " + row.s, textContent: row.s }));
    box.append(head);
    if (row.t) box.append(el("a", { href: row.o || row.t }, el("img", { src: row.t, alt: "original, mask, result of " + row.k })));
    if (row.e) box.append(el("div", { className: "error", textContent: row.e }));
    if (row.f && row.f.length) {
      const list = el("ul", { className: "flags" });
      for (const flag of row.f) list.append(el("li", { textContent: flag }));
      box.append(list);
    }
    const links = el("div", { className: "links" });
    for (const [label, href] of [["original", row.i], ["mask", row.m], ["result", row.o]]) {
      if (href) links.append(el("a", { href: href, textContent: label }));
    }
    box.append(links);
    return box;
  }

  async function render() {
    const mine = ++drawing;
    const chosen = await selection();
    if (mine !== drawing) return;
    const pages = Math.max(1, Math.ceil(chosen.count / meta.page));
    state.page = Math.min(state.page, pages - 1);
    const first = state.page * meta.page, last = Math.min(first + meta.page, chosen.count);
    const indices = [];
    for (let j = first; j < last; j++) indices.push(chosen.list ? chosen.list[j] : chosen.range[0] + j);
    const needed = [...new Set(indices.map((i) => Math.floor(i / meta.page)))];
    await Promise.all(needed.map((n) => load("items-" + n)));
    if (mine !== drawing) return;
    const cards = document.getElementById("cards");
    cards.replaceChildren(...indices.map((i) => card(chunks["items-" + Math.floor(i / meta.page)][i % meta.page])));
    document.getElementById("pageinfo").textContent = chosen.count
      ? `${first + 1}-${last} of ${chosen.count}, page ${state.page + 1} of ${pages}` : "nothing here";
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
    location.replace("#" + new URLSearchParams(state).toString());
  }

  function fromHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.has("view") && (params.get("view") === "all" || meta.views[params.get("view")])) state.view = params.get("view");
    if (params.has("folder") && folders[params.get("folder")]) state.folder = params.get("folder");
    state.page = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
  }

  async function start() {
    await load("folders");
    fromHash();
    const view = document.getElementById("view");
    view.append(el("option", { value: "all", textContent: `all (${meta.total})` }));
    for (const [name, count] of Object.entries(meta.views)) view.append(el("option", { value: name, textContent: `${name} (${count})` }));
    view.value = state.view;
    const folder = document.getElementById("folder");
    for (const name of Object.keys(folders).sort()) {
      const span = folders[name];
      folder.append(el("option", { value: name, textContent: `${name} (${span[1] - span[0]})` }));
    }
    folder.value = state.folder;
    view.onchange = () => { state.view = view.value; state.page = 0; render(); };
    folder.onchange = () => { state.folder = folder.value; state.page = 0; render(); };
    document.getElementById("prev").onclick = () => { state.page -= 1; render(); };
    document.getElementById("next").onclick = () => { state.page += 1; render(); };
    await render();
    document.body.dataset.ready = "1";  // for tests: the first page is on screen
  }

  start().catch((error) => { console.error(error); document.getElementById("cards").textContent = String(error); });
})();
