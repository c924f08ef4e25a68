-- What a reading carried beyond its main values, kept instead of dropped at ingest:
-- a CGM record's trend (mg/dL/min) and quality (%) from the CGM Measurement
-- (CGMS 1.0.1, 3.1.1.5-3.1.1.6), and the wire's `details` (sample type and location of a
-- fingerstick, a CGM record's time offset, measurement-status bits that are not named
-- conditions, ...). Nullable columns without defaults: adding them rewrites nothing.
ALTER TABLE glucose
    ADD COLUMN trend_mgdl_min double precision,
    ADD COLUMN quality_pct    double precision,
    ADD COLUMN details        jsonb;
ALTER TABLE blood_pressure ADD COLUMN details jsonb;
ALTER TABLE body_readings ADD COLUMN details jsonb;
