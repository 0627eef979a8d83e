/* gridops: one generation's grid (a draft or any other) with its validation problems.
   The levels come page by page from /grids (links.next followed), the problems from the
   page's problems_url (a GeoJSON FeatureCollection: kind, codes, detail, area_m2); every
   problem is drawn and listed, and a click on an entry zooms to it. Data is put into the
   page as text, never as HTML. Loaded after Leaflet; reaches nothing but gridops. */
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
      if (!r.ok) { throw new Error(url.split("?")[0] + " answered " + r.status); }
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

    var levelLoads = cfg.levels.map(function (lv) {
      var layer = L.geoJSON(null, {
        style: function () {
          return {color: lv.colour, weight: lv.weight, opacity: 0.9, fill: lv.filled,
                  fillColor: "#8aa1b8", fillOpacity: lv.filled ? 0.12 : 0};
        },
        interactive: lv.filled,
        onEachFeature: function (f, l) {
          if (lv.filled) {
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
      var opts = {paddingTopLeft: [20, 20], paddingBottomRight: [PANEL_PX, 20], maxZoom: 19,
                  animate: false};
      var b = e.bounds;
      if (b.getNorthEast().equals(b.getSouthWest())) {  // a point
        map.setView(b.getCenter(), 18, {animate: false});
        map.panBy([PANEL_PX / 2, 0], {animate: false});
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

    Promise.all([gridLoad, problemsLoad]).then(function (done) {
      var b = null;  // the grid's extent; without a grid, the problems'
      done[0].forEach(function (l) {
        var lb = l.getBounds();
        if (lb.isValid()) {
          b = b ? b.extend(lb) : L.latLngBounds(lb.getSouthWest(), lb.getNorthEast());
        }
      });
      if (!b && drawn.getBounds().isValid()) { b = drawn.getBounds(); }
      if (b && state.selected === null) {
        map.fitBounds(b, {paddingTopLeft: [20, 20], paddingBottomRight: [PANEL_PX, 20],
                          animate: false});
      }
      state.ready = true;
    });
  }

  window.gridopsGeneration = {start: start, state: null};
})();
