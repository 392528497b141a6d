"""The one exception the data layer raises for bad input files.

A `DataError` always says *where* the problem is (file and, when known, 1-based line) so a
user with a 2-million-line corpus can jump straight to it:

    train.txt:1234: expected 'CHAR<TAB>TAG' (2 columns), got 3 columns: '中 B-PER x'
"""

from __future__ import annotations

import os


class DataError(ValueError):
    """A corpus file that cannot be read as the format it claims to be.

    Subclasses `ValueError` so callers that already catch bad values keep working.

    Attributes:
      path: the file, as given by the caller (str or PathLike), or None.
      line: 1-based line number, or None when the problem is not tied to one line.
      message: the explanation without the location prefix.
    """

    def __init__(self, path: str | os.PathLike | None, line: int | None, message: str):
        self.path = path
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        where = os.fspath(self.path)
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"

    def __reduce__(self):
        # Keep the three attributes across pickling (e.g. multiprocessing data loaders).
        return (type(self), (self.path, self.line, self.message))
