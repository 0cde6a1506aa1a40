"""What every part of infersearch leans on and none owns: the one-line error, the device's capabilities,
the content-addressed cache and atomic writes, masked storage URLs, and every private Optuna API in one place."""
