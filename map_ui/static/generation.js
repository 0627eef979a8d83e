/* gridops: one generation's grid (a draft or any other) with its validation problems.
   The levels come page by page from /grids (links.next followed), the problems from the
   page's problems_url (a GeoJSON FeatureCollection: kind, codes, detail, area_m2); every
   problem is drawn and listed, and a click on an entry zooms to it. Data is put into the
   page as text, never as HTML. Loaded after Leaflet; reaches nothing but gridops.

   With cfg.compare (a generation that is not the active one: the planner's page), the
   active generation's finest outlines are drawn over it (or beside it: a second map, its
   view kept with the first), the units this generation changed are highlighted, and its
   impact (cfg.compare.impact_url: GET /generations/{id}/impact) is drawn and tabled: the
   changed outlines old and new, the open cases that would move as points, per changed unit
   its old and new area, where the area went, the cases moved and a flag when a new unit
   would have no patrol; a click on a row zooms to the unit. Without an impact (not built
   yet, refused) the page says so and shows the rest. */
(function () {
  "use strict";

  var PANEL_PX = 560;  // the side panel covers the map's right: fit the view beside it
  var LIST_MAX = 2000;  // entries listed (every problem is drawn)

  function qs(params) {
    return Object.keys(params).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(params[k]);
    }).join("&");
  }

  /* A draft's problems need a planner's token: given in the address's fragment
     (#token=..., never sent to a server or written to its logs), kept for this tab only. */
  var TOKEN = (function () {
    var m = /(?:^|[#&])token=([^&]+)/.exec(window.location.hash || "");
    try {
      if (m) {
        window.sessionStorage.setItem("gridops-token", decodeURIComponent(m[1]));
        window.history.replaceState(null, "", window.location.pathname + window.location.search);
      }
      return window.sessionStorage.getItem("gridops-token");
    } catch (e) {
      return m ? decodeURIComponent(m[1]) : null;
    }
  })();

  function getJSON(url) {
    var headers = {"accept": "application/json"};
    if (TOKEN) { headers.authorization = "Bearer " + TOKEN; }
    return fetch(url, {headers: headers}).then(function (r) {
      if (!r.ok) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          var e = new Error(url.split("?")[0] + " answered " + r.status +
                            (body && body.detail ? ": " + body.detail : ""));
          e.status = r.status;
          throw e;
        });
      }
      return r.json();
    });
  }

  /* Every page of a paged FeatureCollection, each handed to onPage as it comes. */
  function allPages(url, onPage) {
    return getJSON(url).then(function (fc) {
      onPage(fc);
      var next = (fc.links || []).filter(function (l) { return l.rel === "next"; })[0];
      return next ? allPages(next.href, onPage) : null;
    });
  }

  function node(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function status(text, bad) {
    var el = document.getElementById("gridops-status");
    if (el) { el.textContent = text; el.className = bad ? "status bad" : "status"; }
  }

  function area(m2) {
    if (m2 === null || m2 === undefined || isNaN(+m2)) { return ""; }
    m2 = +m2;
    if (m2 >= 1e6) { return (m2 / 1e6).toFixed(3) + " km²"; }
    if (m2 >= 100) { return Math.round(m2).toLocaleString("en") + " m²"; }
    return m2.toPrecision(3) + " m²";
  }

  function start(map, cfg) {
    var state = {ready: false, units: {}, problems: null, error: null, selected: null};
    var named = {};
    var cmp = cfg.compare || null;
    var view = {mode: "overlay"};
    function padRight() { return view.mode === "side" ? 20 : PANEL_PX; }
    window.gridopsMap = map;
    window.gridopsLayers = named;
    window.gridopsGeneration.state = state;
    var control = L.control.layers(null, null, {collapsed: false, position: "topleft"})
      .addTo(map);
    // problems above every level, whatever order the pages arrive in
    map.createPane("problems").style.zIndex = 450;
    var problemRenderer = L.svg({pane: "problems"});
    var kinds = cfg.kinds || {};
    function kindOf(k) { return kinds[k] || {label: k || "problem", colour: "#b00020"}; }

    if (cfg.draft && !TOKEN) {
      state.error = "401: a draft is read with a planner's or the centre's token " +
        "(open the page as /map/generation/" + cfg.generation + "#token=...)";
      status(state.error, true);
      ["problems-body", "impact-body"].forEach(function (id) {
        var el = document.getElementById(id);
        if (el) { el.textContent = ""; el.appendChild(node("p", "status bad", state.error)); }
      });
      return;
    }

    var newByCode = {};  // finest units of this generation by code (their layers)
    var levelLoads = cfg.levels.map(function (lv) {
      var layer = L.geoJSON(null, {
        style: function (f) {
          var changed = cmp && lv.filled && f && f.properties &&
            f.properties.generation_low === cfg.generation;
          return {color: lv.colour, weight: changed ? 2 : lv.weight, opacity: 0.9,
                  fill: lv.filled,
                  fillColor: changed ? cmp.colours.changed : "#8aa1b8",
                  fillOpacity: changed ? 0.45 : (lv.filled ? 0.12 : 0)};
        },
        interactive: lv.filled,
        onEachFeature: function (f, l) {
          if (lv.filled) {
            newByCode[f.properties.code] = l;
            l.bindTooltip((f.properties.name || "") + " " + (f.properties.code || ""),
                          {sticky: true});
          }
        }
      }).addTo(map);
      named[lv.label] = layer;
      control.addOverlay(layer, lv.label);
      state.units[lv.key] = 0;
      var url = cfg.grids_url + "?" + qs({generation: cfg.generation, level: lv.rank,
                                          limit: cfg.page_size});
      return allPages(url, function (fc) {
        layer.addData(fc);
        state.units[lv.key] += fc.features.length;
        status("loading the grid… " + lv.label + " " + state.units[lv.key] +
               (fc.numberMatched !== undefined ? " of " + fc.numberMatched : ""), false);
      }).then(function () { return layer; });
    });

    var drawn = L.featureGroup().addTo(map);
    named.Problems = drawn;
    control.addOverlay(drawn, "Problems");
    var entries = [];  // per problem: {layer, marker, item, bounds}

    function select(i) {
      var e = entries[i];
      if (!e || !e.bounds) { return; }
      if (state.selected !== null && entries[state.selected]) {
        var old = entries[state.selected];
        old.item.classList.remove("selected");
        if (old.layer.setStyle) { old.layer.setStyle(old.style); }
      }
      state.selected = i;
      e.item.classList.add("selected");
      if (e.layer.setStyle) { e.layer.setStyle({weight: 5, color: "#000", fillOpacity: 0.5}); }
      var opts = {paddingTopLeft: [20, 20], paddingBottomRight: [padRight(), 20], maxZoom: 19,
                  animate: false};
      var b = e.bounds;
      if (b.getNorthEast().equals(b.getSouthWest())) {  // a point
        map.setView(b.getCenter(), 18, {animate: false});
        map.panBy([padRight() / 2, 0], {animate: false});
      } else {
        map.fitBounds(b.pad(0.8), opts);  // with what lies around it
      }
      if (e.marker) { e.marker.openTooltip(); }
    }

    function drawProblems(fc) {
      var feats = fc.features || [];
      state.problems = feats.length;
      var body = document.getElementById("problems-body");
      body.textContent = "";
      var counts = fc.counts || {};
      if (!fc.counts) {
        feats.forEach(function (f) {
          var k = (f.properties || {}).kind;
          counts[k] = (counts[k] || 0) + 1;
        });
      }
      var summary = Object.keys(counts).filter(function (k) { return counts[k] > 0; })
        .map(function (k) { return counts[k] + " " + kindOf(k).label; }).join(", ");
      document.getElementById("problem-summary").textContent =
        feats.length ? feats.length + ": " + summary : "";
      if (!feats.length) {
        body.appendChild(node("p", "gen-valid", "no problems: this generation is valid"));
        return;
      }
      var list = node("ol", "gen-problems");
      list.id = "problems";
      feats.forEach(function (f, i) {
        var p = f.properties || {};
        var k = kindOf(p.kind);
        var style = {color: k.colour, weight: 3, opacity: 1, fillColor: k.colour,
                     fillOpacity: 0.35, renderer: problemRenderer, pane: "problems"};
        var codes = (p.codes || []).join(", ");
        var tip = k.label + (codes ? ": " + codes : "");
        var e = {style: style, layer: null, marker: null, bounds: null, item: null};
        if (f.geometry) {
          e.layer = L.geoJSON(f, {
            renderer: problemRenderer, pane: "problems",
            style: function () { return style; },
            pointToLayer: function (_f, ll) {
              return L.circleMarker(ll, Object.assign({radius: 9}, style));
            }
          }).addTo(drawn);
          e.bounds = e.layer.getBounds();
          // a sliver of a square metre is invisible at city scale: a marker shows it
          e.marker = L.circleMarker(e.bounds.getCenter(), {
            radius: 5, color: "#fff", weight: 1.5, fillColor: k.colour, fillOpacity: 1,
            renderer: problemRenderer, pane: "problems"}).addTo(drawn);
          e.marker.bindTooltip(tip);
          e.layer.on("click", function () { select(i); scrollTo(i); });
          e.marker.on("click", function () { select(i); scrollTo(i); });
        }
        entries.push(e);
        if (i >= LIST_MAX) { return; }
        var li = node("li", "problem kind-" + (p.kind || "unknown"));
        li.style.setProperty("--kind", k.colour);
        li.dataset.index = String(i);
        li.appendChild(node("span", "kind", k.label));
        if (codes) { li.appendChild(document.createTextNode(" ")); }
        li.appendChild(node("span", "codes", codes));
        if (p.detail) { li.appendChild(node("div", "detail", p.detail)); }
        var a = area(p.area_m2);
        if (a) { li.appendChild(node("div", "muted area", a)); }
        if (!e.bounds) {
          li.classList.add("no-geometry");
          li.appendChild(node("div", "muted", "(no geometry)"));
        }
        li.addEventListener("click", function () { select(i); });
        e.item = li;
        list.appendChild(li);
      });
      body.appendChild(list);
      if (feats.length > LIST_MAX) {
        body.appendChild(node("p", "muted", "the first " + LIST_MAX + " of " + feats.length +
                              " are listed; every one is drawn"));
      }
    }

    function scrollTo(i) {
      var e = entries[i];
      if (e && e.item) { e.item.scrollIntoView({block: "nearest"}); }
    }

    var problemsLoad = getJSON(cfg.problems_url).then(drawProblems, function (err) {
      state.error = err.message;
      var body = document.getElementById("problems-body");
      body.textContent = "";
      body.appendChild(node("p", "status bad", "the problems could not be loaded: " +
                            err.message));
    });

    var gridLoad = Promise.all(levelLoads).then(function (layers) {
      var total = Object.keys(state.units).reduce(function (n, k) {
        return n + state.units[k]; }, 0);
      status(total.toLocaleString("en") + " units drawn", false);
      return layers;
    }, function (err) {
      state.error = err.message;
      status("the grid could not be loaded: " + err.message, true);
      return [];
    });

    var compareLoad = cmp ? startCompare(map, cfg, state, named, control, newByCode, view,
                                         padRight) : Promise.resolve(null);

    Promise.all([gridLoad, problemsLoad, compareLoad]).then(function (done) {
      var b = null;  // the grid's extent; without a grid, the problems'
      done[0].forEach(function (l) {
        var lb = l.getBounds();
        if (lb.isValid()) {
          b = b ? b.extend(lb) : L.latLngBounds(lb.getSouthWest(), lb.getNorthEast());
        }
      });
      if (!b && drawn.getBounds().isValid()) { b = drawn.getBounds(); }
      if (b && state.selected === null && !state.selectedUnit) {
        map.fitBounds(b, {paddingTopLeft: [20, 20], paddingBottomRight: [padRight(), 20],
                          animate: false});
      }
      state.ready = true;
    });
  }

  /* ------------------------------------------------ against the active generation */

  function pct(share) {
    if (share === null || share === undefined || isNaN(+share)) { return ""; }
    return (Math.round(+share * 1000) / 10) + " %";
  }

  function startCompare(map, cfg, state, named, control, newByCode, view, padRight) {
    var cmp = cfg.compare;
    var col = cmp.colours;
    state.mode = "overlay";
    state.old = 0;
    state.impact = null;
    state.impactError = null;
    state.cases = 0;
    state.selectedUnit = null;
    var oldStyle = {color: col.old, weight: 1.6, opacity: 0.9, dashArray: "5 4", fill: false};
    var oldMain = L.geoJSON(null, {style: function () { return oldStyle; },
                                   interactive: false}).addTo(map);
    var oldLabel = "Active generation " + cmp.active + " (old)";
    named[oldLabel] = oldMain;
    control.addOverlay(oldMain, oldLabel);
    var oldFeatures = [];
    var side = null;  // the second map, made when first shown: {map, old, changes}

    map.createPane("changes").style.zIndex = 430;
    map.createPane("cases").style.zIndex = 460;
    var changes = L.featureGroup().addTo(map);
    named["Changed units"] = changes;
    control.addOverlay(changes, "Changed units");
    var cases = L.featureGroup().addTo(map);
    named["Open cases that would move"] = cases;
    control.addOverlay(cases, "Open cases that would move");
    var byCode = {};  // unit code -> [layers] of its changed outlines (old and new)
    var rows = {};  // unit code -> its table row
    var impact = null;

    function changeStyle(f) {
      var old = (f.properties || {}).side === "old";
      return old ? {color: col.old, weight: 3, opacity: 1, dashArray: "6 4", fill: false,
                    pane: "changes"}
                 : {color: col.new, weight: 2.5, opacity: 1, fillColor: col.changed,
                    fillOpacity: 0.35, pane: "changes"};
    }

    var oldUrl = cfg.grids_url + "?" + qs({generation: cmp.active, level: cmp.finest,
                                           limit: cfg.page_size});
    var oldLoad = cmp.finest === null ? Promise.resolve(null) : allPages(oldUrl, function (fc) {
      oldMain.addData(fc);
      Array.prototype.push.apply(oldFeatures, fc.features);
      if (side) { side.old.addData(fc); }
      state.old += fc.features.length;
    }).catch(function (err) {
      state.error = err.message;
      status("the active generation could not be loaded: " + err.message, true);
    });

    function unitBounds(code) {
      var b = null;
      (byCode[code] || []).concat(newByCode[code] ? [newByCode[code]] : []).forEach(
        function (l) {
          var lb = l.getBounds ? l.getBounds() : null;
          if (lb && lb.isValid()) {
            b = b ? b.extend(lb) : L.latLngBounds(lb.getSouthWest(), lb.getNorthEast());
          }
        });
      return b;
    }

    function selectUnit(code) {
      var b = unitBounds(code);
      if (state.selectedUnit && rows[state.selectedUnit]) {
        rows[state.selectedUnit].classList.remove("selected");
      }
      state.selectedUnit = code;
      if (rows[code]) { rows[code].classList.add("selected"); }
      (byCode[code] || []).forEach(function (l) { if (l.bringToFront) { l.bringToFront(); } });
      if (b) {
        map.fitBounds(b.pad(0.3), {paddingTopLeft: [20, 20],
                                   paddingBottomRight: [padRight(), 20], maxZoom: 18,
                                   animate: false});
      }
    }

    function cell(tr, text, cls) {
      var td = node("td", cls || "", text);
      tr.appendChild(td);
      return td;
    }

    function shares(list) {
      return (list || []).map(function (x) {
        return x.code + (x.share !== undefined && x.share !== null ? " " + pct(x.share) : "") +
          (x.area_m2 !== undefined && x.area_m2 !== null ? " (" + area(x.area_m2) + ")" : "");
      }).join(", ");
    }

    function drawImpact(imp) {
      impact = imp;
      var body = document.getElementById("impact-body");
      body.textContent = "";
      var sm = imp.summary || {};
      var summary = node("div", "impact-summary");
      [["units_changed", "changed"], ["units_new", "new"], ["units_ended", "ended"],
       ["open_cases_moved", "open cases moved"], ["assets_moved", "assets moved"],
       ["unpatrolled", "without patrol"]].forEach(function (k) {
        var span = node("span", "sum-" + k[0]);
        span.appendChild(node("b", null, sm[k[0]] === undefined ? "–" : sm[k[0]]));
        span.appendChild(document.createTextNode(" " + k[1]));
        summary.appendChild(span);
      });
      body.appendChild(summary);
      if (imp.took_ms !== undefined) {
        document.getElementById("impact-took").textContent =
          "(" + Math.round(imp.took_ms) + " ms, against generation " + imp.against + ")";
      }
      // the changed outlines, old and new
      var fc = imp.changes || {type: "FeatureCollection", features: []};
      L.geoJSON(fc, {
        style: changeStyle,
        onEachFeature: function (f, l) {
          var p = f.properties || {};
          (byCode[p.code] = byCode[p.code] || []).push(l);
          l.bindTooltip((p.side === "old" ? "old: " : "new: ") + (p.name || "") + " " +
                        p.code + " · " + (cmp.changes[p.change] || p.change || ""),
                        {sticky: true});
          l.on("click", function () { selectUnit(p.code); scrollRow(p.code); });
        }
      }).eachLayer(function (l) { changes.addLayer(l); });
      if (side) { side.changes.addData(oldSide(fc)); }
      // the open cases that would move
      var moved = {};
      (imp.cases || []).forEach(function (c) {
        var og = (c.old || {}).grid, ng = (c.new || {}).grid;
        [og, ng].forEach(function (g) { if (g) { moved[g] = (moved[g] || 0) + 1; } });
        if (c.lon === null || c.lon === undefined) { return; }
        var mk = L.circleMarker([c.lat, c.lon], {radius: 6, color: "#fff", weight: 1.5,
                                                 fillColor: col.case, fillOpacity: 1,
                                                 pane: "cases"});
        mk.bindTooltip(c.ref + " (" + (c.category || "") + ", " + (c.status || "") + "): " +
                       (og || "outside") + " → " + (ng || "outside"));
        cases.addLayer(mk);
      });
      state.cases = cases.getLayers().length;
      var unpatrolled = {};
      ((imp.patrol || {}).unpatrolled || []).forEach(function (c) { unpatrolled[c] = true; });
      // the table: per changed unit
      var units = imp.units || [];
      if (!units.length) {
        body.appendChild(node("p", "muted", "no unit changes"));
      } else {
        var table = node("table", "impact-units");
        table.id = "impact-units";
        var head = node("tr");
        ["unit", "change", "old area", "new area", "where the area went", "cases moved"]
          .forEach(function (h) { head.appendChild(node("th", null, h)); });
        var thead = node("thead");
        thead.appendChild(head);
        table.appendChild(thead);
        var tbody = node("tbody");
        units.forEach(function (u) {
          var tr = node("tr", "unit change-" + (u.change || "unknown"));
          tr.dataset.code = u.code;
          var td = cell(tr, null);
          td.appendChild(node("span", "codes", u.code));
          if (u.name) { td.appendChild(node("div", "muted", u.name)); }
          if (unpatrolled[u.code]) {
            tr.classList.add("unpatrolled");
            td.appendChild(node("span", "flag-unpatrolled", "no patrol"));
          }
          cell(tr, cmp.changes[u.change] || u.change || "");
          cell(tr, area(u.old_area_m2), "num");
          cell(tr, area(u.new_area_m2), "num");
          var went = node("td", "went");
          if ((u.to || []).length) { went.appendChild(node("div", null, "to " + shares(u.to))); }
          if ((u.from || []).length) {
            went.appendChild(node("div", "muted", "from " + shares(u.from)));
          }
          tr.appendChild(went);
          cell(tr, moved[u.code] || 0, "num");
          tr.addEventListener("click", function () { selectUnit(u.code); });
          rows[u.code] = tr;
          tbody.appendChild(tr);
        });
        table.appendChild(tbody);
        body.appendChild(table);
      }
      var nobody = Object.keys(unpatrolled);
      if (nobody.length) {
        var p = node("p", "status bad unpatrolled-list",
                     "new units without a patrol after inheritance: " + nobody.join(", "));
        body.appendChild(p);
      }
      // the cases, listed
      if ((imp.cases || []).length) {
        body.appendChild(node("h2", null, "Open cases that would move (" +
                              imp.cases.length + ")"));
        var ct = node("table", "impact-cases");
        ct.id = "impact-cases";
        var ch = node("tr");
        ["case", "status", "grid now", "grid after"].forEach(function (h) {
          ch.appendChild(node("th", null, h)); });
        ct.appendChild(ch);
        imp.cases.slice(0, 500).forEach(function (c) {
          var tr = node("tr", "case-row");
          cell(tr, c.ref);
          cell(tr, c.status);
          cell(tr, (c.old || {}).grid || "outside", "codes");
          cell(tr, (c.new || {}).grid || "outside", "codes");
          tr.addEventListener("click", function () {
            map.setView([c.lat, c.lon], 18, {animate: false});
          });
          ct.appendChild(tr);
        });
        body.appendChild(ct);
      }
      state.impact = {units: units.length, cases: (imp.cases || []).length,
                      changes: (fc.features || []).length, unpatrolled: nobody.length};
    }

    function scrollRow(code) {
      if (rows[code]) { rows[code].scrollIntoView({block: "nearest"}); }
    }

    function oldSide(fc) {
      return {type: "FeatureCollection", features: (fc.features || []).filter(function (f) {
        return (f.properties || {}).side === "old"; })};
    }

    var impactLoad = getJSON(cmp.impact_url).then(drawImpact, function (err) {
      state.impactError = err.message;
      var body = document.getElementById("impact-body");
      body.textContent = "";
      var why = err.status === 404 || err.status === 405 || err.status === 501 ?
        "this server does not compute it yet" : err.message;
      body.appendChild(node("p", "impact-unavailable",
                            "the impact is unavailable (" + why + "); the outlines old and " +
                            "new and the problems are shown without it"));
    });

    // overlaid or side by side
    function makeSide() {
      var el = document.getElementById("gridops-old-map");
      var m2 = L.map(el, {zoomControl: false, attributionControl: false,
                          preferCanvas: true, maxZoom: map.getMaxZoom()});
      m2.createPane("changes").style.zIndex = 430;  // changeStyle draws there
      m2.setView(map.getCenter(), map.getZoom(), {animate: false});
      var old = L.geoJSON(null, {style: function () { return oldStyle; },
                                 interactive: false}).addTo(m2);
      if (oldFeatures.length) {
        old.addData({type: "FeatureCollection", features: oldFeatures});
      }
      var ch = L.geoJSON(null, {style: changeStyle, interactive: false}).addTo(m2);
      if (impact) { ch.addData(oldSide(impact.changes || {})); }
      window.gridopsOldLayers = {old: old, changes: ch};
      var syncing = false;
      function follow(from, to) {
        from.on("move", function () {
          if (syncing || view.mode !== "side") { return; }
          syncing = true;
          to.setView(from.getCenter(), from.getZoom(), {animate: false});
          syncing = false;
        });
      }
      follow(map, m2);
      follow(m2, map);
      window.gridopsOldMap = m2;
      return {map: m2, old: old, changes: ch};
    }

    function setMode(mode) {
      var centre = map.getCenter(), zoom = map.getZoom();
      view.mode = mode;
      state.mode = mode;
      document.body.classList.toggle("side-by-side", mode === "side");
      document.getElementById("mode-overlay").classList.toggle("on", mode === "overlay");
      document.getElementById("mode-side").classList.toggle("on", mode === "side");
      map.invalidateSize({animate: false});
      if (mode === "side") {
        if (!side) { side = makeSide(); }
        side.map.invalidateSize({animate: false});
        map.removeLayer(oldMain);
        map.setView(centre, zoom, {animate: false});
        side.map.setView(centre, zoom, {animate: false});
      } else {
        map.addLayer(oldMain);
        map.setView(centre, zoom, {animate: false});
      }
      if (state.selectedUnit) { selectUnit(state.selectedUnit); }  // kept in sight
    }
    document.getElementById("mode-overlay").addEventListener("click", function () {
      setMode("overlay"); });
    document.getElementById("mode-side").addEventListener("click", function () {
      setMode("side"); });

    window.gridopsGeneration.selectUnit = selectUnit;
    window.gridopsGeneration.setMode = setMode;
    return Promise.all([oldLoad, impactLoad]);
  }

  window.gridopsGeneration = {start: start, state: null};
})();
