"""Reports rendered from run records: tables, figures, Markdown/HTML."""
