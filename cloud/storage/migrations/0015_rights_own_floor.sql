-- A right to a building's residents may give each resident only the named doors on the floor of
-- their own unit (a lift lobby or a floor door): `own_floor`. The door's floor comes from its
-- location in the gateway config (doors.floor), the resident's from units.floor.
ALTER TABLE access_rights ADD COLUMN own_floor boolean NOT NULL DEFAULT false;
ALTER TABLE access_rights ADD CONSTRAINT access_rights_own_floor_needs_building
    CHECK (NOT own_floor OR building_id IS NOT NULL);
