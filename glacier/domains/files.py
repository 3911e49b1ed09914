"""Built-in domains read from glacier files (the one place where domains meet ``io``).

- ``hintereisferner``: Hintereisferner, Oetztal Alps (RGI60-11.00897), ``data/hintereisferner.nc``.
- ``south_glacier``: South Glacier, Yukon (RGI60-01.16195, ITMIX), ``data/south_glacier.nc``.
- ``netcdf``: any file following the conventions of ``data/README.md`` (``glacier.path=FILE``).

All three share the options ``dx``, ``initial``, ``smb_gradient``, ``basal_stress``, ``t_end``
and ``save_every`` (see ``real.domain_from_fields``). Files are read and validated by
``glacier.io.readers.read_glacier_file`` (which imports nothing else of the package).
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path

from ..errors import ConfigError
from ..io.readers import data_path, read_glacier_file
from ..options import option
from .base import Domain, register
from .real import domain_from_fields


class Initial(enum.Enum):
    """Initial thickness of a real glacier (``real.domain_from_fields``)."""

    auto = "auto"
    observed = "observed"
    zero = "zero"
    estimate = "estimate"


@dataclasses.dataclass(frozen=True)
class RealGlacierOptions:
    """``glacier=hintereisferner`` / ``south_glacier``: a bundled real glacier (data/README.md)."""

    dx: float | None = option(
        None, "grid spacing [m]: null = the file's, else a multiple of it")
    initial: Initial = option(
        Initial.auto, "initial thickness: auto, observed, zero or estimate (shallow-ice)")
    smb_gradient: float | None = option(
        None, "mass-balance elevation feedback [m ice a-1 m-1]; null = fitted")
    basal_stress: float = option(100000.0, "basal shear stress of the thickness estimate [Pa]")
    t_end: float = option(100.0, "default simulated years (solver.t_end overrides)")
    save_every: float = option(10.0, "default years between saves (solver.save_every overrides)")

    def fields_options(self) -> dict:
        """The keyword arguments of ``real.domain_from_fields``."""
        initial = self.initial.value if isinstance(self.initial, Initial) else self.initial
        return dict(dx=self.dx, initial=initial, smb_gradient=self.smb_gradient,
                    basal_stress=self.basal_stress, t_end=self.t_end,
                    save_every=self.save_every)


@dataclasses.dataclass(frozen=True)
class NetcdfOptions(RealGlacierOptions):
    """``glacier=netcdf``: any NetCDF file that follows data/README.md's conventions."""

    path: str | None = option(None, "path of the NetCDF file (required: glacier.path=FILE)",
                              required=True)


@register("hintereisferner", RealGlacierOptions)
def hintereisferner(o: RealGlacierOptions) -> Domain:
    """Hintereisferner (RGI60-11.00897) on its native 50 m grid (97 x 140), 8.04 km^2.

    Surface SRTM 2000, outline RGI 6.0 (2003), thickness Farinotti et al. (2019) consensus (a
    model product, used as the initial state by ``initial=auto``), smb the mean 1964-2003 WGMS
    profile mapped on the surface (its elevation feedback is fitted from ``mb_profile``), climate
    HISTALP. No thickness observations. Options: see ``real.domain_from_fields``.
    """
    return domain_from_fields("hintereisferner", read_glacier_file(data_path("hintereisferner.nc")),
                              **o.fields_options())


@register("south_glacier", RealGlacierOptions)
def south_glacier(o: RealGlacierOptions) -> Domain:
    """South Glacier, Yukon (RGI60-01.16195; ITMIX, Farinotti et al. 2017), 50 m, 120 x 99.

    Surface and 9619 radar thickness points (2008-2011) from Wilson et al. (2013), binned into
    900 cells; distributed smb from Wheler et al. (2014); CRU TS4.01 climate. There is no gridded
    thickness, so ``initial=auto`` starts from the shallow-ice estimate. Options: see
    ``real.domain_from_fields``.
    """
    return domain_from_fields("south_glacier", read_glacier_file(data_path("south_glacier.nc")),
                              **o.fields_options())


@register("netcdf", NetcdfOptions)
def netcdf(o: NetcdfOptions) -> Domain:
    """Any glacier file that follows the conventions of ``data/README.md`` (``o.path``,
    relative paths from the current directory; other options: ``real.domain_from_fields``).

    The domain is named after the file's ``glacier_name`` attribute, else the file name.
    """
    path = o.path
    if path is None or not str(path).strip():
        raise ConfigError("glacier=netcdf needs glacier.path=FILE: the NetCDF file of the glacier "
                          "(conventions in data/README.md), e.g. glacier=netcdf "
                          "glacier.path=/data/my_glacier.nc.")
    fields = read_glacier_file(path)
    name = str(fields["attrs"].get("glacier_name") or Path(fields["path"]).stem)
    return domain_from_fields(name, fields, **o.fields_options())
