"""Result bodies: shapes, rows, comparison and downloads (CSV, XLSX, Parquet)."""
