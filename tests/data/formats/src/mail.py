"""A multipart e-mail made with Python's standard email package, printed to stdout."""
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone

m = EmailMessage()
m["From"] = "Ada Keeper <ada@example.org>"
m["To"] = "Survey Team <team@example.org>"
m["Subject"] = "Heron count for Sunday"
m["Date"] = format_datetime(datetime(2026, 5, 3, 9, 30, tzinfo=timezone.utc))
m["Message-ID"] = "<heron-count-1@example.org>"
m.set_content("Hello team,\n\nWe counted forty nests on the north shore this morning.\n\nAda\n")
m.add_alternative("<p>Hello team,</p><p>We counted <b>forty nests</b> on the north shore this morning.</p>", subtype="html")
m.add_attachment("Site,Nests\nNorth shore,40\nReed bed,12\n", subtype="csv", filename="counts.csv")
print(m.as_string(), end="")
