"""What community staff read: one Excel workbook per community per day, in Chinese, masked for the role."""
