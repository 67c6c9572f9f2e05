//! The index of one shard: its series (canonical key -> id), and per measurement the
//! field types and the inverted tag index (tag key -> tag value -> series). In memory,
//! rebuilt at start-up as the engine replays its log through it
//! ([`crate::tsdb::engine::SeriesIndex`]).

use crate::base::hash::HashMapById;
use crate::lineproto::{self, FieldType, ParsedBody, PointRef};
use crate::tsdb::engine::{SeriesId, SeriesIndex};
use std::collections::{HashMap, HashSet};

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

/// The series and measurements of one shard.
#[derive(Debug, Default)]
pub struct Index {
    series_by_hash: HashMapById<Vec<SeriesId>>,
    series: Vec<Series>,
    measurements: HashMap<Box<[u8]>, MeasurementIndex>,
}

impl Index {
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
        let measurement: Box<[u8]> = body.bytes(&point.measurement).into();
        let index = self.measurements.entry(measurement).or_default();
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
        if !self.measurements.contains_key(m_raw) {
            self.measurements
                .insert(m_raw.into(), MeasurementIndex::default());
        }
        let index = self.measurements.get_mut(m_raw).expect("inserted above");
        for f in body.point_fields(point) {
            let key = body.bytes(&f.key);
            let t = f.value.field_type();
            if let Some(&existing) = index.field_types.get(key) {
                if existing != t {
                    return Err(format!(
                        "field type conflict: input field \"{}\" on measurement \"{}\" is type {}, already exists as type {}",
                        String::from_utf8_lossy(&lineproto::unescape(key)),
                        String::from_utf8_lossy(&lineproto::unescape(m_raw)),
                        t,
                        existing
                    ));
                }
            }
        }
        for f in body.point_fields(point) {
            let key = body.bytes(&f.key);
            if !index.field_types.contains_key(key) {
                index.field_types.insert(key.into(), f.value.field_type());
            }
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
            }
        }
    }
}
