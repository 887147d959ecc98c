"""The report builder: reads run folders (no model), computes every table and figure and writes the static
page (:mod:`circuitft.report.build`), the page and its figure sections (:mod:`circuitft.report.page`) and
its statistics tables (:mod:`circuitft.report.stats`). ``circuitft report`` parses, calls it and prints."""
