"""The static report site: HTML pages, plots and badges built from scan records (see build.py)."""

from bot.site.build import RefusedRecord, SiteSummary, SkippedRevision, build_from_store, build_site

__all__ = ["RefusedRecord", "SiteSummary", "SkippedRevision", "build_from_store", "build_site"]
