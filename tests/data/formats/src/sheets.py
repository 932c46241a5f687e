"""Two sheets as a flat ODF spreadsheet (.fods) on stdout, for LibreOffice to save as xlsx/ods/xls."""
from xml.sax.saxutils import escape

def cell(v):
    if isinstance(v, (int, float)):
        return f'<table:table-cell office:value-type="float" office:value="{v}"><text:p>{v}</text:p></table:table-cell>'
    return f'<table:table-cell office:value-type="string"><text:p>{escape(v)}</text:p></table:table-cell>'

def table(name, rows):
    body = "".join("<table:table-row>" + "".join(cell(v) for v in r) + "</table:table-row>" for r in rows)
    return f'<table:table table:name="{name}">{body}</table:table>'

sites = ["North shore", "Reed bed", "Old mill", "Island"]
counts = [["Site", "Week", "Nests", "Observer"]] + [
    [sites[i % 4], i // 4 + 1, 10 + (i * 7) % 31, ["Ada", "Ben", "Cleo"][i % 3]] for i in range(40)
]
budget = [["Item", "Cost"], ["Binoculars", 240], ["Boardwalk repair", 1300], ["Observation hide", 2100]]
print('<?xml version="1.0" encoding="UTF-8"?>'
      '<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
      ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
      ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
      ' office:version="1.2" office:mimetype="application/vnd.oasis.opendocument.spreadsheet">'
      '<office:body><office:spreadsheet>'
      + table("Counts", counts) + table("Budget", budget) +
      '</office:spreadsheet></office:body></office:document>')
