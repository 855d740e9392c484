"""HTML reports with figures: the claims ledger and one estimator check.

* :mod:`~properties.report.page`: :func:`write_report`, :func:`write_check_report`, atomic output;
* :mod:`~properties.report.sequence_page`: :func:`write_sequence_report`, a sequence check's page;
* :mod:`~properties.report.compare_page`: :func:`write_compare_report`, a comparison's page;
* :mod:`~properties.report.audit_page`: :func:`write_audit_report`, a library audit's page;
* :mod:`~properties.report.figures`: the figures' data (from :mod:`impl`), drawing and captions;
* :mod:`~properties.report.html`: the page's HTML and the JSON beside it.

matplotlib (the ``report`` extra) is imported only when a page is written.
"""

from __future__ import annotations

from properties.report.compare_page import write_compare_report
from properties.report.figures import ReportUnavailable
from properties.report.page import write_check_report, write_report
from properties.report.sequence_page import write_sequence_report

__all__ = ["ReportUnavailable", "write_check_report", "write_compare_report", "write_report", "write_sequence_report"]
