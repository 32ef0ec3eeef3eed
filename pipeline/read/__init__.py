"""The read stage: any supported spreadsheet file → a RawTable of text cells with the row numbers a person sees.

Modules:

- `table`: `read_table`, the entry point: checks the path and dispatches on the extension;
- `finish`: `finish_table`, the rules common to both readers (headers, blanks, corrections round trip);
- `csv`: delimited text (.csv/.tsv/.txt): decoding, delimiter sniffing, ragged rows;
- `excel`: workbooks (.xlsx/.xlsm/.xls/.ods) through calamine, with the cells calamine gets wrong fixed;
- `cells`: how a workbook cell's stored value becomes the text a person saw (numbers, formats, dates).

The two readers are imported only when a file of their kind is read.
"""

from pipeline.read.table import CSV_SUFFIXES, EXCEL_SUFFIXES, read_table

__all__ = ["CSV_SUFFIXES", "EXCEL_SUFFIXES", "read_table"]
