-- Names for selectors and reports (Grafana variables, console lists): parks and firms with
-- their cluster, in the contract so nobody reads registry tables directly.
CREATE VIEW v_parks AS
SELECT p.park_id, p.name, p.name_en, p.province, p.city, p.timezone, p.land_mu,
       (SELECT count(*) FROM firms f WHERE f.park_id = p.park_id)::int AS firms
FROM parks p;

CREATE VIEW v_firms AS
SELECT f.park_id, f.firm_id, f.name, f.name_en, f.cluster_id, c.name AS cluster_name, c.name_en AS cluster_name_en,
       f.industry, f.land_mu, f.size_class, f.production_start, f.credit_code
FROM firms f
LEFT JOIN clusters c USING (cluster_id);
