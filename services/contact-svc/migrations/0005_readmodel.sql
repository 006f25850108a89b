-- Read model additions (contacts read model, identities, transfers).

-- When the profile fields (name, avatar, gender, unionid) were last set from an event: a profile
-- from an older event (friend-added consumed after a later contact-updated, on another topic)
-- only fills gaps, it never overwrites a newer one.
ALTER TABLE contacts ADD COLUMN profile_at timestamptz;

-- GET /v1/contacts sorts by first_added_at, contact_id; a contact seen only through a deletion or
-- an edit has no first_added_at yet and sorts as the oldest ('-infinity'), which keeps the keyset
-- cursor total.
CREATE INDEX contacts_tenant_sort_idx
    ON contacts (tenant_id, (COALESCE(first_added_at, '-infinity'::timestamptz)), contact_id);

-- transfer-failed finds the waiting transfer of a customer to the staff member who should have
-- taken over.
CREATE INDEX transfers_to_staff_idx ON transfers (tenant_id, to_staff);
