-- A join's ack lists a room's first members, owner and admins first, then
-- by when they joined. Without this index every join sorted all of the
-- room's members: in a room of 10,000, filling it cost O(members²).
CREATE INDEX room_members_by_rank ON room_members
    (room_id, (CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END), joined_at, user_id);
