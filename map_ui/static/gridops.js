/* gridops map pages: behaviour shared by the wall, the lookup and the grid pages.
   Loaded after Leaflet; nothing here touches the network beyond gridops's own API. */
(function () {
  "use strict";

  var BIN_COLOURS = {
    "3": "#d62f27", "2": "#ed7551", "1": "#fab984", "0": "#d9d9d9",
    "-1": "#b5c8e0", "-2": "#7590c1", "-3": "#4575b5"
  };

  function qs(params) {
    var out = [];
    Object.keys(params).forEach(function (k) {
      var v = params[k];
      if (v !== null && v !== undefined && v !== "") {
        out.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
      }
    });
    return out.join("&");
  }

  function getJSON(url) {
    return fetch(url, {headers: {"accept": "application/json"}}).then(function (r) {
      if (!r.ok) { throw new Error(url + " answered " + r.status); }
      return r.json();
    });
  }

  function status(text, bad) {
    var el = document.getElementById("gridops-status");
    if (el) { el.textContent = text; el.className = bad ? "status bad" : "status"; }
  }

  function warn(err) { status("data not refreshed: " + err.message, true); console.warn(err); }

  /* The view (zoom/lat/lon) and the layers switched on live in the URL's hash, so a
     reload (the wall's refresh, or a bookmark) keeps them. */
  /* The view the address keeps (#zoom/lat/lon/...), else the bounds fitted: set before any
     tile layer is added, so that none fetches the tiles of a view never shown. */
  function initialView(map, bounds) {
    var parts = location.hash.replace(/^#/, "").split("/");
    if (parts.length >= 3 && !isNaN(+parts[0]) && !isNaN(+parts[1]) && !isNaN(+parts[2])) {
      map.setView([+parts[1], +parts[2]], +parts[0], {animate: false});
    } else if (bounds) {
      map.fitBounds(bounds, {animate: false});
    }
  }

  function keepState(map, named, bounds) {
    function write() {
      var c = map.getCenter();
      var on = Object.keys(named).filter(function (k) { return map.hasLayer(named[k]); });
      var h = "#" + map.getZoom() + "/" + c.lat.toFixed(5) + "/" + c.lng.toFixed(5) +
              "/" + on.map(encodeURIComponent).join(",");
      history.replaceState(null, "", location.pathname + location.search + h);
    }
    var parts = location.hash.replace(/^#/, "").split("/");
    if (parts.length >= 3 && !isNaN(+parts[0]) && !isNaN(+parts[1]) && !isNaN(+parts[2])) {
      map.setView([+parts[1], +parts[2]], +parts[0], {animate: false});
      if (parts.length >= 4) {
        var on = parts[3] ? parts[3].split(",").map(decodeURIComponent) : [];
        Object.keys(named).forEach(function (k) {
          var want = on.indexOf(k) >= 0;
          if (want && !map.hasLayer(named[k])) { map.addLayer(named[k]); }
          if (!want && map.hasLayer(named[k])) { map.removeLayer(named[k]); }
        });
      }
    }
    else if (bounds) {
      map.fitBounds(bounds, {animate: false});
    }
    map.on("moveend zoomend overlayadd overlayremove", write);
    write();
  }

  /* Leaflet.VectorGrid 1.3 calls L.DomEvent.fakeStop, which Leaflet 1.8 removed: mark the
     event as handled, as Leaflet's own stopPropagation does for its events. */
  if (window.L && L.DomEvent && !L.DomEvent.fakeStop) {
    L.DomEvent.fakeStop = function (e) { e._stopped = true; return this; };
  }

  /* A vector-tile layer (Leaflet.VectorGrid) of the wall: a tooltip naming the feature under
     the mouse, the feature highlighted across its tiles, and for the finest grid level
     (opts.click) the grid's popup on a click. `_gridopsLoaded` is set once its tiles are in. */
  function tiled(map, layer, opts) {
    var tip = L.tooltip({sticky: true, direction: "top", offset: [0, -8]});
    var over = null;
    function text(p) {
      if (opts.zone) {
        return "<b>" + esc(p.name) + "</b><br>" + esc(p.department_name || p.department_code) +
               "<br><code>" + esc(p.code) + "</code>";
      }
      return "<b>" + esc(p.name) + "</b> <code>" + esc(p.code) + "</code>";
    }
    function id(p) { return p.code + "|" + (p.layer || ""); }
    layer.on("mouseover", function (e) {
      var p = e.layer.properties;
      if (over !== null && over !== id(p)) { layer.resetFeatureStyle(over); }
      over = id(p);
      layer.setFeatureStyle(over, {color: "#000", weight: 3, fill: !!opts.click,
                                   fillOpacity: 0.0, opacity: 1});
      tip.setLatLng(e.latlng).setContent(text(p));
      if (!map.hasLayer(tip)) { tip.addTo(map); }
    });
    layer.on("mousemove", function (e) { if (map.hasLayer(tip)) { tip.setLatLng(e.latlng); } });
    layer.on("mouseout", function () {
      if (over !== null) { layer.resetFeatureStyle(over); over = null; }
      if (map.hasLayer(tip)) { map.removeLayer(tip); }
    });
    map.on("overlayremove", function (e) {
      if (e.layer === layer && map.hasLayer(tip)) { map.removeLayer(tip); }
    });
    if (opts.click) {
      layer.on("click", function (e) { gridPopup(map, e.layer.properties, e.latlng); });
    }
    layer.on("load", function () { layer._gridopsLoaded = true; });
    layer.on("loading", function () { layer._gridopsLoaded = false; });
    /* below its zoom a level loads nothing (its units would be specks): nothing to wait for */
    function below() {
      if (map.getZoom() < (layer.options.minZoom || 0)) { layer._gridopsLoaded = true; }
    }
    map.on("zoomend", below);
    below();
  }

  /* Permanent labels of a grid level, only from a zoom on and only for the units on screen
     (the server gives a point inside each: url + &bbox=), while the level is shown. */
  function labels(map, layer, minZoom, cls, url) {
    var group = L.layerGroup().addTo(map);
    var asked = 0;
    function update() {
      var show = map.getZoom() >= minZoom && map.hasLayer(layer);
      var mine = ++asked;
      if (!show) { group.clearLayers(); return; }
      var b = map.getBounds();
      var bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]
        .map(function (v) { return v.toFixed(5); }).join(",");
      getJSON(url + "&bbox=" + bbox).then(function (points) {
        if (mine !== asked) { return; }  // a later view asked since
        group.clearLayers();
        points.forEach(function (p) {
          group.addLayer(L.tooltip({permanent: true, direction: "center",
                                    className: "lbl " + cls, interactive: false})
            .setLatLng([p.lat, p.lon]).setContent(esc(p.name || p.code)));
        });
      }).catch(warn);
    }
    map.on("zoomend moveend overlayadd overlayremove", update);
    update();
  }

  function binStyle(f) {
    var b = String(f.properties.bin);
    var sig = b !== "0";
    return {color: sig ? BIN_COLOURS[b] : "#999999", weight: sig ? 1 : 0.5,
            fillColor: BIN_COLOURS[b], fillOpacity: sig ? 0.7 : 0.25, opacity: 0.9};
  }

  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }

  function lookupLink(latlng) {
    return '<a href="/map/lookup?' + qs({lon: latlng.lng.toFixed(7), lat: latlng.lat.toFixed(7)}) +
           '">who is responsible here?</a>';
  }

  function hotspotPopup(f, latlng) {
    var p = f.properties;
    return "<b>" + esc(p.label) + "</b><br>cases " + p.count + "<br>Gi* z " + p.z +
           ", p " + p.p + "<br><code>" + esc(p.h3) + "</code><br>" + lookupLink(latlng);
  }

  /* A click on a grid of the finest level: its name, its page, and the dispute lookup of
     the spot clicked. */
  function gridPopup(map, p, latlng) {
    L.popup().setLatLng(latlng).setContent(
      "<b>" + esc(p.name) + "</b> <code>" + esc(p.code) + "</code><br>" +
      '<a href="/map/grid/' + encodeURIComponent(p.code) + '">grid page</a> · ' +
      lookupLink(latlng)).openOn(map);
  }

  /* Gi* hexagons from /hotspots, at a resolution that suits the zoom. */
  function hotspots(map, group, filters) {
    function load(force) {
      if (!map.hasLayer(group) && !force) { return; }
      var zoom = map.getZoom();
      var params = Object.assign({zoom: zoom}, filters);
      if (zoom >= 13) {  // fine hexagons: only those on screen (and a margin)
        var b = map.getBounds().pad(0.5);
        params.bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]
          .map(function (v) { return v.toFixed(5); }).join(",");
      }
      var url = "/hotspots?" + qs(params);
      getJSON(url).then(function (fc) {
        group.clearLayers();
        L.geoJSON(fc, {style: binStyle, onEachFeature: function (f, l) {
          l.on("click", function (e) {
            L.popup().setLatLng(e.latlng).setContent(hotspotPopup(f, e.latlng)).openOn(map);
          });
        }})
          .addTo(group);
        var s = document.getElementById("gridops-hotspot-summary");
        if (s) {
          s.textContent = "res " + fc.res + ": " + fc.summary.bins["3"] + " cells hot at 99%, " +
                          fc.summary.bins["2"] + " at 95%, " + fc.summary.bins["1"] + " at 90%";
        }
      }).catch(warn);
    }
    var lastZoom = map.getZoom();
    map.on("moveend", function () {  // also fires after a zoom
      var z = map.getZoom();
      if (z >= 13 || z !== lastZoom) { lastZoom = z; load(false); }
    });
    map.on("overlayadd", function (e) { if (e.layer === group) { load(true); } });
    load(false);
    return function () { load(false); };
  }

  function caseIcon(p) {
    var cls = "case";
    if (p.escalated_count > 0) { cls += " escalated"; } else if (p.overdue_count > 0) {
      cls += " overdue"; }
    var n = p.count;
    var size = n > 1 ? Math.min(44, 18 + Math.round(Math.log(n) * 5)) : 12;
    var text = n > 1 ? String(n) : "";
    return L.divIcon({className: cls, html: "<span>" + text + "</span>",
                      iconSize: [size, size]});
  }

  function casePopup(p) {
    if (p.count > 1) {
      return "<b>" + p.count + " open cases</b><br>" + p.overdue_count + " overdue, " +
             p.escalated_count + " escalated";
    }
    return "<b>" + esc(p.ref) + "</b> " + esc(p.category) + "<br>status " +
           esc(p.status) + (p.overdue ? " <b>overdue</b>" : "") +
           (p.escalation > 0 ? " <b>escalated (" + p.escalation + ")</b>" : "") +
           "<br>grid " + esc(p.grid || "-") + ", department " + esc(p.department || "-");
  }

  /* Open cases on screen: one by one when few, else per hexagon (the server aggregates). */
  function openCases(map, group) {
    function load() {
      if (!map.hasLayer(group)) { return; }
      var b = map.getBounds();
      var url = "/map/wall/open.json?" + qs({
        bbox: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]
          .map(function (v) { return v.toFixed(5); }).join(","),
        zoom: map.getZoom()});
      getJSON(url).then(function (fc) {
        group.clearLayers();
        fc.features.forEach(function (f) {
          var c = f.geometry.coordinates;
          L.marker([c[1], c[0]], {icon: caseIcon(f.properties),
                                  zIndexOffset: f.properties.escalated_count * 1000 +
                                                f.properties.overdue_count * 100})
            .bindPopup(casePopup(f.properties)).addTo(group);
        });
      }).catch(warn);
    }
    map.on("moveend overlayadd", load);
    load();
    return load;
  }

  function counts(url) {
    return getJSON(url).then(function (c) {
      Object.keys(c).forEach(function (k) {
        var el = document.getElementById("count-" + k);
        if (el) { el.textContent = c[k].toLocaleString("en"); }
      });
      status("updated " + new Date().toLocaleTimeString("en-GB"), false);
    }).catch(warn);
  }

  function every(seconds, fns) {
    if (!seconds || seconds <= 0) { return; }
    setInterval(function () { fns.forEach(function (fn) { fn(); }); }, seconds * 1000);
  }

  /* The dispute page: clicking anywhere looks that spot up. */
  function lookupOnClick(map, extra) {
    map.on("click", function (e) {
      var params = Object.assign({lon: e.latlng.lng.toFixed(7), lat: e.latlng.lat.toFixed(7)},
                                 extra || {});
      location.href = "/map/lookup?" + qs(params) + "#" + map.getZoom() + "/" +
                      e.latlng.lat.toFixed(6) + "/" + e.latlng.lng.toFixed(6);
    });
  }

  window.gridops = {
    keepState: keepState, initialView: initialView, labels: labels, hotspots: hotspots, openCases: openCases,
    counts: counts, every: every, lookupOnClick: lookupOnClick, gridPopup: gridPopup,
    tiled: tiled,
    binColours: BIN_COLOURS
  };
})();
