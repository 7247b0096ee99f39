"""Imported only by the extractor's multiprocessing fork server, as its preload module
(extractor.runner): the server imports the parse worker's code once for every file, and dies
with the extractor.

Each parse worker dies with its parent, this server (extractor.lifetime). The server itself would
exit only once every worker had closed its copy of the server's "alive" pipe, so a killed
extractor could leave a worker that finished parsing waiting forever to flush its queue into a
pipe nobody reads, and the server waiting for that worker. Dying with the extractor ends both.
"""

from __future__ import annotations

import os

import extractor.worker  # noqa: F401  the import every parse worker shares
from extractor.lifetime import die_with_parent

die_with_parent(os.getppid())  # this module's one job: see the docstring
