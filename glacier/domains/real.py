"""Real glaciers and user NetCDF files (placeholder: filled in by the domain-loader work)."""
