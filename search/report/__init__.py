"""What a study reports, all derived from its storage: the report files (files), the console tables (table),
W&B (tracking), and ``infersearch report``, which rebuilds them from storage alone (rebuild)."""
