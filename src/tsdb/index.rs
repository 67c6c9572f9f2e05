//! The index of one shard partition: its series (canonical key -> id), and per
//! measurement the field types and the inverted tag index (tag key -> tag value ->
//! series). In memory, rebuilt at start-up as the engine replays its log through it
//! ([`crate::tsdb::engine::SeriesIndex`]).
//!
//! A field's type is fixed per shard, as in InfluxDB, not per partition: the
//! partitions of a shard on one node share a [`SharedFieldTypes`], consulted when a
//! partition first meets a (measurement, field) (a rare slow path, under a mutex held
//! for one map operation; a field it already knows is checked locally). While a
//! partition replays its log it checks locally only (the log was checked when
//! written, and another partition's replay order must not refuse acknowledged
//! points); it joins the shared types once open ([`Index::share_field_types`]).

use crate::base::hash::HashMapById;
use crate::lineproto::{self, FieldType, ParsedBody, PointRef};
use crate::tsdb::engine::{SeriesId, SeriesIndex};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The field types of one shard's measurements, shared by its partitions on this node.
#[derive(Debug, Default)]
pub struct SharedFieldTypes {
    measurements: Mutex<HashMap<Box<[u8]>, SharedMeasurement>>,
}

#[derive(Debug, Default)]
struct SharedMeasurement {
    /// Partitions whose index holds the measurement; at 0 its field types go (DROP
    /// MEASUREMENT everywhere, or every partition dropped).
    holders: u32,
    fields: HashMap<Box<[u8]>, FieldType>,
}

impl SharedFieldTypes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, SharedMeasurement>> {
        // A panic elsewhere while holding it cannot leave the map half-changed (each
        // operation is one map update), so a poisoned lock is still usable.
        self.measurements.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hold(&self, measurement: &[u8]) {
        self.lock().entry(measurement.into()).or_default().holders += 1;
    }

    fn release(&self, measurement: &[u8]) {
        let mut map = self.lock();
        if let Some(m) = map.get_mut(measurement) {
            m.holders = m.holders.saturating_sub(1);
            if m.holders == 0 {
                map.remove(measurement);
            }
        }
    }

    fn get(&self, measurement: &[u8], field: &[u8]) -> Option<FieldType> {
        self.lock()
            .get(measurement)
            .and_then(|m| m.fields.get(field).copied())
    }

    /// The field's type: the one already registered, else `t`, registered now.
    fn settle(&self, measurement: &[u8], field: &[u8], t: FieldType) -> FieldType {
        *self
            .lock()
            .entry(measurement.into())
            .or_default()
            .fields
            .entry(field.into())
            .or_insert(t)
    }

    /// Measurements known (for tests and stats).
    pub fn measurements(&self) -> usize {
        self.lock().len()
    }
}

/// Every shard's [`SharedFieldTypes`] on this node, by shard id.
#[derive(Debug, Default)]
pub struct NodeFieldTypes {
    shards: Mutex<HashMap<u64, Arc<SharedFieldTypes>>>,
}

impl NodeFieldTypes {
    /// The field types of shard `id` (made on first use).
    pub fn of(&self, id: u64) -> Arc<SharedFieldTypes> {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        shards.entry(id).or_default().clone()
    }

    /// Forgets shard `id` once no partition holds its types (after a drop), so the map
    /// holds only shards with a partition open on this node.
    pub fn forget_unused(&self, id: u64) {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        if shards.get(&id).is_some_and(|s| Arc::strong_count(s) == 1) {
            shards.remove(&id);
        }
    }
}

/// Tag value -> ids of the series carrying it.
pub type TagValues = HashMap<Box<[u8]>, Vec<SeriesId>>;

/// Index of one measurement: field types and tag key -> tag value -> series.
#[derive(Debug, Default)]
pub struct MeasurementIndex {
    pub field_types: HashMap<Box<[u8]>, FieldType>,
    pub tags: HashMap<Box<[u8]>, TagValues>,
    pub series: Vec<SeriesId>,
}

/// One series of the index.
#[derive(Debug)]
struct Series {
    /// Canonical key, escaped as in line protocol.
    key: Box<[u8]>,
    /// Deleted: out of its measurement's index; a new point puts it back.
    dropped: bool,
}

/// The series and measurements of one shard partition.
#[derive(Debug, Default)]
pub struct Index {
    series_by_hash: HashMapById<Vec<SeriesId>>,
    series: Vec<Series>,
    measurements: HashMap<Box<[u8]>, MeasurementIndex>,
    /// The shard's field types on this node, once the partition is open.
    shared: Option<Arc<SharedFieldTypes>>,
}

impl Drop for Index {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            for m in self.measurements.keys() {
                shared.release(m);
            }
        }
    }
}

impl Index {
    /// Joins the shard's field types on this node: registers this partition's
    /// measurements and field types (a type another partition registered first wins
    /// and is logged), and checks new fields against them from now on.
    pub fn share_field_types(&mut self, shared: Arc<SharedFieldTypes>) {
        for (m, index) in &self.measurements {
            shared.hold(m);
            for (field, &t) in &index.field_types {
                let settled = shared.settle(m, field, t);
                if settled != t {
                    tracing::warn!(
                        measurement = %String::from_utf8_lossy(m),
                        field = %String::from_utf8_lossy(field),
                        "a field has type {t} in one partition and {settled} in another of the same shard; new points must be {settled}"
                    );
                }
            }
        }
        self.shared = Some(shared);
    }

    /// Adds an empty measurement (registering it with the shared types).
    fn add_measurement(&mut self, measurement: &[u8]) -> &mut MeasurementIndex {
        if !self.measurements.contains_key(measurement) {
            if let Some(shared) = &self.shared {
                shared.hold(measurement);
            }
            self.measurements
                .insert(measurement.into(), MeasurementIndex::default());
        }
        self.measurements
            .get_mut(measurement)
            .expect("inserted above")
    }

    /// The measurement index (escaped names as keys).
    pub fn measurements(&self) -> &HashMap<Box<[u8]>, MeasurementIndex> {
        &self.measurements
    }

    /// The canonical (escaped) key of series `id`.
    pub fn series_key(&self, id: SeriesId) -> &[u8] {
        &self.series[id as usize].key
    }

    /// Series ids, in or out of the index (every id ever assigned).
    pub fn all_series(&self) -> std::ops::Range<SeriesId> {
        0..self.series.len() as SeriesId
    }

    /// Series in the index.
    pub fn live_series(&self) -> usize {
        self.series.iter().filter(|s| !s.dropped).count()
    }

    /// Keys of the series of a measurement (escaped name) that satisfy `matches`.
    pub fn matching_series(
        &self,
        measurement: &[u8],
        matches: impl Fn(&[u8]) -> bool,
    ) -> Vec<String> {
        let Some(index) = self.measurements.get(measurement) else {
            return Vec::new();
        };
        index
            .series
            .iter()
            .map(|&id| &self.series[id as usize].key)
            .filter(|k| matches(k))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    /// The ids of the series of `measurement` a scan must look at: every series of it,
    /// or, with `required_tags` (tag key, value, as stored), the shortest posting list
    /// of the inverted index among those pairs (none when a pair has no series).
    pub fn scan_candidates(
        &self,
        measurement: &[u8],
        required_tags: &[(Vec<u8>, Vec<u8>)],
    ) -> Vec<SeriesId> {
        let Some(index) = self.measurements.get(measurement) else {
            return Vec::new();
        };
        let mut candidates: &[SeriesId] = &index.series;
        for (key, value) in required_tags {
            match index.tags.get(&key[..]).and_then(|v| v.get(&value[..])) {
                Some(ids) if ids.len() < candidates.len() => candidates = ids,
                Some(_) => {}
                None => return Vec::new(),
            }
        }
        candidates.to_vec()
    }

    /// Series ids carrying `tag key = value` in `measurement` (escaped forms).
    pub fn series_with_tag(&self, measurement: &[u8], key: &[u8], value: &[u8]) -> &[SeriesId] {
        self.measurements
            .get(measurement)
            .and_then(|m| m.tags.get(key))
            .and_then(|v| v.get(value))
            .map_or(&[], |v| v.as_slice())
    }

    /// Adds series `sid` (of `point`'s key) to its measurement's series and tag index.
    fn index_series(&mut self, sid: SeriesId, body: &ParsedBody, point: &PointRef) {
        let index = self.add_measurement(body.bytes(&point.measurement));
        index.series.push(sid);
        for t in body.point_tags(point) {
            index
                .tags
                .entry(body.bytes(&t.key).into())
                .or_default()
                .entry(body.bytes(&t.value).into())
                .or_default()
                .push(sid);
        }
    }
}

impl SeriesIndex for Index {
    fn find(&self, body: &ParsedBody, point: &PointRef) -> Option<SeriesId> {
        let key = body.series_key(point);
        self.series_by_hash
            .get(&point.key_hash)?
            .iter()
            .copied()
            .find(|&id| &*self.series[id as usize].key == key)
    }

    fn check_field_types(&mut self, body: &ParsedBody, point: &PointRef) -> Result<(), String> {
        let m_raw = body.bytes(&point.measurement);
        let conflict = |key: &[u8], t: FieldType, existing: FieldType| {
            format!(
                "field type conflict: input field \"{}\" on measurement \"{}\" is type {}, already exists as type {}",
                String::from_utf8_lossy(&lineproto::unescape(key)),
                String::from_utf8_lossy(&lineproto::unescape(m_raw)),
                t,
                existing
            )
        };
        let shared = self.shared.clone();
        let index = self.add_measurement(m_raw);
        for f in body.point_fields(point) {
            let key = body.bytes(&f.key);
            let t = f.value.field_type();
            let existing = match index.field_types.get(key) {
                Some(&existing) => Some(existing),
                None => shared.as_ref().and_then(|s| s.get(m_raw, key)),
            };
            if let Some(existing) = existing.filter(|&e| e != t) {
                return Err(conflict(key, t, existing));
            }
        }
        for f in body.point_fields(point) {
            let key = body.bytes(&f.key);
            if index.field_types.contains_key(key) {
                continue;
            }
            let t = f.value.field_type();
            // Another partition may have registered the field since the check above.
            let settled = shared.as_ref().map_or(t, |s| s.settle(m_raw, key, t));
            if settled != t {
                index.field_types.insert(key.into(), settled);
                return Err(conflict(key, t, settled));
            }
            index.field_types.insert(key.into(), t);
        }
        Ok(())
    }

    fn resolve(&mut self, body: &ParsedBody, point: u32, known: Option<SeriesId>) -> SeriesId {
        let point = &body.points[point as usize];
        // Created by an earlier point of this batch, or new.
        let sid = match known.or_else(|| self.find(body, point)) {
            Some(sid) => sid,
            None => {
                let id = self.series.len() as SeriesId;
                self.index_series(id, body, point);
                self.series.push(Series {
                    key: body.series_key(point).into(),
                    dropped: false,
                });
                self.series_by_hash
                    .entry(point.key_hash)
                    .or_default()
                    .push(id);
                return id;
            }
        };
        if self.series[sid as usize].dropped {
            self.index_series(sid, body, point);
            self.series[sid as usize].dropped = false;
        }
        sid
    }

    fn series_of_keys(&self, keys: &[String]) -> Vec<SeriesId> {
        let keys: HashSet<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        self.series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.dropped && keys.contains(&*s.key))
            .map(|(id, _)| id as SeriesId)
            .collect()
    }

    fn remove_series(&mut self, emptied: &[SeriesId], drop_measurements: &[String]) {
        if !emptied.is_empty() {
            for &sid in emptied {
                self.series[sid as usize].dropped = true;
            }
            let gone: HashSet<SeriesId> = emptied.iter().copied().collect();
            for index in self.measurements.values_mut() {
                index.series.retain(|id| !gone.contains(id));
                for values in index.tags.values_mut() {
                    for ids in values.values_mut() {
                        ids.retain(|id| !gone.contains(id));
                    }
                    values.retain(|_, ids| !ids.is_empty());
                }
                index.tags.retain(|_, v| !v.is_empty());
            }
        }
        for m in drop_measurements {
            if self
                .measurements
                .get(m.as_bytes())
                .is_some_and(|i| i.series.is_empty())
            {
                self.measurements.remove(m.as_bytes());
                if let Some(shared) = &self.shared {
                    shared.release(m.as_bytes());
                }
            }
        }
    }
}
