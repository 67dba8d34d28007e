-- Firms' yearly profit (利润总额, 10k CNY; negative for a loss) for the 亩均利润 indicator of
-- Zhengzhou's 亩均 scheme (rules/data/mu/zhengzhou-2018.yaml). Imported with `parkpulse firms
-- import` (column profit_10k_cny / 利润总额(万元)). Existing rows get NULL: nothing is re-evaluated
-- by this migration, and results stored before it keep the numbers and explanation of their run.
ALTER TABLE firm_economics ADD COLUMN profit_10k_cny numeric;
