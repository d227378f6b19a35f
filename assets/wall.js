/* The wall screen's browser side (callbacks/wall.py registers these as clientside callbacks).

   The server sends each tick's view model (layouts/wall.py, view_model) in one
   store; applyView puts it on the page. Everything here is presentation: no
   figure is computed in the browser. */
(function () {
  "use strict";
  // The renderer adds no_update, PreventUpdate and Patch to this object: read them at call time.
  const clientside = (window.dash_clientside = window.dash_clientside || {});

  function key(id) {
    return id.scope + "|" + id.metric;
  }

  function sameList(a, b) {
    return JSON.stringify(a || []) === JSON.stringify(b || []);
  }

  clientside.wall = {
    /* The tick's view onto the tiles (in the order of their ids), the header, the band,
       the footer and the focus line. The band and the pipeline strip are swapped only
       when their fingerprint differs from the one on screen; a new set of rows is
       signalled (wall-sites) so that the server renders the grid again. */
    applyView: function (view, focus, tileIds, scopesOnScreen, renderedKeys) {
      const noUpdate = clientside.no_update;
      if (!view) {
        throw clientside.PreventUpdate;
      }
      const tiles = tileIds.map((id) => view.tiles[key(id)] || view.missing);
      const onScreen = renderedKeys || {};
      const bandChanged = view.band.key !== onScreen.band;
      const pipelineChanged = view.pipeline.key !== onScreen.pipeline;
      return [
        tiles.map((tile) => tile.text),
        tiles.map((tile) => tile.sub),
        tiles.map((tile) => tile.class),
        view.as_of_text,
        view.freshness,
        view.banner,
        !view.banner,
        bandChanged ? view.band.children : noUpdate,
        pipelineChanged ? view.pipeline.children : noUpdate,
        focus ? view.focus[focus] || "" : "",
        bandChanged || pipelineChanged ? { band: view.band.key, pipeline: view.pipeline.key } : noUpdate,
        sameList(view.scopes, scopesOnScreen) ? noUpdate : view.scopes,
      ];
    },

    /* Patch in the sparklines the server says changed ({lines: {"scope|metric": {x, y, version}}})
       and remember their versions, which the next sparkline request sends back. */
    applySparklines: function (changes, sparkIds, versions) {
      const noUpdate = clientside.no_update;
      if (!changes || !changes.lines) {
        throw clientside.PreventUpdate;
      }
      const next = Object.assign({}, versions || {});
      const figures = sparkIds.map((id) => {
        const line = changes.lines[key(id)];
        if (!line) {
          return noUpdate;
        }
        next[key(id)] = line.version;
        return new clientside.Patch().assign(["data", 0, "x"], line.x).assign(["data", 0, "y"], line.y).build();
      });
      return [figures, next];
    },

    /* The next site to highlight (the network row is never the focus). */
    nextFocus: function (n, scopes) {
      const sites = (scopes || []).filter((scope) => scope !== "*");
      if (!sites.length) {
        return null;
      }
      return sites[(n || 0) % sites.length];
    },

    rowClasses: function (focus, rowIds) {
      return rowIds.map((id) =>
        id.scope === "*" ? "wrow wrow-network" : id.scope === focus ? "wrow wrow-focus" : "wrow"
      );
    },

    /* The second banner: the server has not answered for longer than the stale threshold. */
    serverSilence: function (n, view) {
      const noUpdate = clientside.no_update;
      if (!view) {
        return [noUpdate, noUpdate];
      }
      const age = Date.now() / 1000 - view.as_of;
      if (age > view.stale_after_s) {
        return ["STALE: no fresh figures from the server for " + Math.round(age) + " s", false];
      }
      return ["", true];
    },
  };
})();
