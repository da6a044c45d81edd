"""Market history for backtests: the files (store) and the downloader (download)."""
