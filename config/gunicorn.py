"""gunicorn settings for every way Loupe is served (bin/up, the Dockerfile, docker-compose.yml:
``gunicorn -c config/gunicorn.py config.wsgi``); their command lines add bind and worker counts.

gunicorn's control socket goes in Loupe's var folder (``LOUPE_VAR_DIR``, as in settings.py), not
in the home directory where it lands by default: everything Loupe writes stays under var/.
"""

from __future__ import annotations

import os
from pathlib import Path

var_dir = Path(os.environ.get("LOUPE_VAR_DIR") or Path(__file__).resolve().parent.parent / "var").resolve()
var_dir.mkdir(parents=True, exist_ok=True)
control_socket = str(var_dir / "gunicorn.ctl")
