//! Rows read straight from a JSON body into the feature [`Matrix`]: numbers are parsed in
//! place and written where their feature belongs, with no `Value` tree and no copy of the
//! body. It reads every shape clients send — `instances` (arrays or records), `inputs`
//! (rows or columns), `dataframe_records`, `dataframe_split` (`columns` before `data`),
//! `params` skipped — when every value is valid. Anything else misses, with the row and
//! feature it stopped at, and the tree reader answers that body with its own message.

use super::Schema;
use super::matrix::Matrix;
use super::scan::{Miss, Number, Scan, Scanned};

/// Which route's body: `/predict` takes `{"instances": ...}` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Predict,
    Invocations,
}

/// Where the reader stopped: the row and the feature (index in the schema), when inside one.
pub type Stopped = Option<(usize, Option<usize>)>;

/// The body's rows, or where the fast reader stopped.
pub fn read_json(
    body: &[u8],
    route: Route,
    schema: &Schema<'_>,
    max_instances: usize,
) -> Result<Matrix, Stopped> {
    let mut reader = Reader {
        scan: Scan::new(body),
        schema,
        features: Lookup::new(schema.features),
        max_instances,
        values: Vec::new(),
        at: None,
    };
    match reader.body(route) {
        Ok(()) => Ok(Matrix::new(reader.values, schema.features.len())),
        Err(Miss) => Err(reader.at),
    }
}

/// Feature name → index in the schema.
struct Lookup<'a> {
    names: &'a [String],
    index: Option<std::collections::HashMap<&'a [u8], usize>>,
}

impl<'a> Lookup<'a> {
    fn new(names: &'a [String]) -> Self {
        // A linear search is faster for the usual handful of features.
        let index = (names.len() > 16).then(|| {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_bytes(), i))
                .collect()
        });
        Lookup { names, index }
    }

    fn get(&self, key: &[u8]) -> Option<usize> {
        match &self.index {
            Some(map) => map.get(key).copied(),
            None => self.names.iter().position(|n| n.as_bytes() == key),
        }
    }
}

struct Reader<'a, 'b> {
    scan: Scan<'a>,
    schema: &'b Schema<'b>,
    features: Lookup<'b>,
    max_instances: usize,
    values: Vec<f64>,
    at: Stopped,
}

impl Reader<'_, '_> {
    fn n(&self) -> usize {
        self.schema.features.len()
    }

    fn body(&mut self, route: Route) -> Scanned<()> {
        self.scan.eat(b'{')?;
        let mut format_seen = false;
        let mut params_seen = false;
        loop {
            let key = self.scan.key()?;
            match (route, key) {
                (Route::Invocations, b"params") if !params_seen => {
                    params_seen = true;
                    self.scan.skip_value()?;
                }
                (_, b"instances") | (Route::Invocations, b"inputs" | b"dataframe_records")
                    if !format_seen =>
                {
                    format_seen = true;
                    if key == b"inputs" && self.scan.peek() == Some(b'{') {
                        self.columns()?;
                    } else {
                        self.instances()?;
                    }
                }
                (Route::Invocations, b"dataframe_split") if !format_seen => {
                    format_seen = true;
                    self.split()?;
                }
                _ => return Err(Miss),
            }
            if !self.scan.next_or_close(b'}')? {
                break;
            }
        }
        if !format_seen || !self.scan.at_end() {
            self.at = None;
            return Err(Miss);
        }
        let rows = self.values.len() / self.n().max(1);
        if rows == 0 {
            self.at = None;
            return Err(Miss);
        }
        Ok(())
    }

    /// One more row may be read, or the count is past the limit.
    fn start_row(&mut self, row: usize) -> Scanned<()> {
        self.at = Some((row, None));
        if row >= self.max_instances {
            return Err(Miss);
        }
        Ok(())
    }

    fn value(&mut self, row: usize, feature: usize) -> Scanned<f64> {
        self.at = Some((row, Some(feature)));
        match self.scan.number()? {
            Number::Value(v) => Ok(v),
            Number::Missing if self.schema.accepts_missing => Ok(f64::NAN),
            Number::Missing => Err(Miss),
        }
    }

    /// `[row, ...]`, each row read by `read_row` (given its index) after the count is checked.
    fn rows(&mut self, mut read_row: impl FnMut(&mut Self, usize) -> Scanned<()>) -> Scanned<()> {
        self.scan.eat(b'[')?;
        if self.scan.eat_if(b']') {
            return Ok(());
        }
        let mut row = 0;
        loop {
            self.start_row(row)?;
            read_row(self, row)?;
            row += 1;
            if !self.scan.next_or_close(b']')? {
                return Ok(());
            }
        }
    }

    /// Rows as arrays in feature order or records keyed by feature name.
    fn instances(&mut self) -> Scanned<()> {
        self.rows(|reader, row| match reader.scan.peek() {
            Some(b'[') => reader.array_row(row, None),
            Some(b'{') => reader.record_row(row),
            _ => Err(Miss),
        })
    }

    /// `[v, ...]`: in feature order, or in `order` (feature index of each position).
    fn array_row(&mut self, row: usize, order: Option<&[usize]>) -> Scanned<()> {
        let n = self.n();
        let base = self.values.len();
        self.values.resize(base + n, 0.0);
        self.scan.eat(b'[')?;
        let mut i = 0;
        if !self.scan.eat_if(b']') {
            loop {
                let feature = match order {
                    Some(order) => *order.get(i).ok_or(Miss)?,
                    None if i < n => i,
                    None => return Err(Miss),
                };
                let v = self.value(row, feature)?;
                self.values[base + feature] = v;
                i += 1;
                if !self.scan.next_or_close(b']')? {
                    break;
                }
            }
        }
        self.at = Some((row, None));
        if i == order.map_or(n, <[usize]>::len) {
            Ok(())
        } else {
            Err(Miss)
        }
    }

    /// `{"feature": v, ...}` naming every feature once.
    fn record_row(&mut self, row: usize) -> Scanned<()> {
        let n = self.n();
        let base = self.values.len();
        self.values.resize(base + n, 0.0);
        let mut seen = vec![false; n];
        self.scan.eat(b'{')?;
        if !self.scan.eat_if(b'}') {
            loop {
                let key = self.scan.key()?;
                let feature = self.features.get(key).ok_or(Miss)?;
                self.at = Some((row, Some(feature)));
                if std::mem::replace(&mut seen[feature], true) {
                    return Err(Miss);
                }
                self.values[base + feature] = self.value(row, feature)?;
                if !self.scan.next_or_close(b'}')? {
                    break;
                }
            }
        }
        self.at = Some((row, seen.iter().position(|s| !s)));
        if seen.iter().all(|s| *s) {
            Ok(())
        } else {
            Err(Miss)
        }
    }

    /// `{"feature": [v0, v1, ...], ...}`: every feature once, columns of one length.
    fn columns(&mut self) -> Scanned<()> {
        let n = self.n();
        let mut columns: Vec<Option<Vec<f64>>> = vec![None; n];
        self.scan.eat(b'{')?;
        if !self.scan.eat_if(b'}') {
            loop {
                let key = self.scan.key()?;
                let feature = self.features.get(key).ok_or(Miss)?;
                if columns[feature].is_some() {
                    return Err(Miss);
                }
                let mut column = Vec::new();
                self.scan.eat(b'[')?;
                if !self.scan.eat_if(b']') {
                    loop {
                        self.start_row(column.len())?;
                        column.push(self.value(column.len(), feature)?);
                        if !self.scan.next_or_close(b']')? {
                            break;
                        }
                    }
                }
                columns[feature] = Some(column);
                if !self.scan.next_or_close(b'}')? {
                    break;
                }
            }
        }
        self.at = None;
        let columns: Vec<Vec<f64>> = columns.into_iter().collect::<Option<_>>().ok_or(Miss)?;
        let rows = columns.first().map_or(0, Vec::len);
        if columns.iter().any(|c| c.len() != rows) {
            return Err(Miss);
        }
        self.values.reserve(rows * n);
        for r in 0..rows {
            self.values.extend(columns.iter().map(|c| c[r]));
        }
        Ok(())
    }

    /// `{"columns": [...], "data": [[...], ...]}` (other keys, such as pandas' `index`,
    /// skipped); without `columns` the data rows are in feature order.
    fn split(&mut self) -> Scanned<()> {
        self.scan.eat(b'{')?;
        let mut order: Option<Vec<usize>> = None;
        let mut seen: Vec<&[u8]> = Vec::new();
        if self.scan.eat_if(b'}') {
            return Err(Miss);
        }
        let mut data_seen = false;
        loop {
            let key = self.scan.key()?;
            if seen.contains(&key) {
                return Err(Miss);
            }
            seen.push(key);
            match key {
                // The columns must be known before the data is read.
                b"columns" if data_seen => return Err(Miss),
                b"columns" => order = Some(self.column_order()?),
                b"data" => {
                    data_seen = true;
                    self.data(order.as_deref())?;
                }
                _ => self.scan.skip_value()?,
            }
            if !self.scan.next_or_close(b'}')? {
                break;
            }
        }
        if data_seen { Ok(()) } else { Err(Miss) }
    }

    /// The feature index of each named column: every feature exactly once.
    fn column_order(&mut self) -> Scanned<Vec<usize>> {
        let n = self.n();
        let mut order = Vec::with_capacity(n);
        let mut seen = vec![false; n];
        self.scan.eat(b'[')?;
        if !self.scan.eat_if(b']') {
            loop {
                let feature = self.features.get(self.scan.plain_string()?).ok_or(Miss)?;
                if std::mem::replace(&mut seen[feature], true) {
                    return Err(Miss);
                }
                order.push(feature);
                if !self.scan.next_or_close(b']')? {
                    break;
                }
            }
        }
        if seen.iter().all(|s| *s) {
            Ok(order)
        } else {
            Err(Miss)
        }
    }

    fn data(&mut self, order: Option<&[usize]>) -> Scanned<()> {
        match order {
            Some(order) => self.rows(|reader, row| reader.array_row(row, Some(order))),
            None => self.instances(),
        }
    }
}

/// A CSV body's rows (`Content-Type: text/csv`: a header row of feature names, any order),
/// read record by record into the matrix; where it stopped otherwise.
pub fn read_csv(body: &[u8], schema: &Schema<'_>, max_instances: usize) -> Result<Matrix, Stopped> {
    let n = schema.features.len();
    let features = Lookup::new(schema.features);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for name in reader.byte_headers().map_err(|_| None)? {
        let feature = features.get(name).ok_or(None)?;
        if std::mem::replace(&mut seen[feature], true) {
            return Err(None);
        }
        order.push(feature);
    }
    if !seen.iter().all(|s| *s) {
        return Err(None);
    }
    let mut values = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut row = 0;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => return Err(Some((row, None))),
        }
        if row >= max_instances || record.len() != order.len() {
            return Err(Some((row, None)));
        }
        let base = values.len();
        values.resize(base + n, 0.0);
        for (field, &feature) in record.iter().zip(&order) {
            let stopped = Some((row, Some(feature)));
            values[base + feature] = match field {
                b"" | b"NaN" if schema.accepts_missing => f64::NAN,
                _ => std::str::from_utf8(field)
                    .ok()
                    .and_then(|text| text.parse::<f64>().ok())
                    .filter(|v| v.is_finite())
                    .ok_or(stopped)?,
            };
        }
        row += 1;
    }
    if row == 0 {
        return Err(None);
    }
    Ok(Matrix::new(values, n))
}
