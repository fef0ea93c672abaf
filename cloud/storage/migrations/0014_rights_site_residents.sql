-- A right may also go to every resident of the site (common areas: the gym, the pool, the car park).
ALTER TABLE access_rights ADD COLUMN site_residents boolean NOT NULL DEFAULT false;
ALTER TABLE access_rights DROP CONSTRAINT access_rights_check;
ALTER TABLE access_rights ADD CONSTRAINT access_rights_one_subject
    CHECK (num_nonnulls(person_id, building_id, CASE WHEN site_residents THEN true END) = 1);
