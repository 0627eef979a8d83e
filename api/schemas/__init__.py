"""Request and response models (pydantic), a module a topic: common (errors, generations,
GeoJSON, links, the helpers routes declare their answers with), grids, resolve,
responsibility (/owner, /lookup, /alignment), layers, kpis, hotspots, health, maps (the
wall's JSON), cases and open311."""
