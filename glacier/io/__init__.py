"""File input and output: the only modules that import xarray or netCDF4."""
