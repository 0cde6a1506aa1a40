"""One trial, the stages of a run: the baseline (checkpoint, or trained once and cached), the variant
(cached prune + recover), evaluate (engine, quantize, precision, measure: the typed trial record), and the
fork server that runs each trial in its own process with the baseline preloaded (isolation, preload)."""
