//! The pickle stack machine: one opcode at a time, building data, never calling anything.

use super::*;

impl Reader<'_, '_> {
    pub(super) fn run(&mut self) -> Result<Id, ModelError> {
        let mut stack: Vec<Item> = Vec::new();
        let mut memo: HashMap<usize, Id> = HashMap::new();
        loop {
            let op = self.u8()?;
            match op {
                // PROTO n
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(ModelError::unsupported(format!(
                            "pickle protocol {proto} (this reader knows 0 to 5)"
                        )));
                    }
                }
                // FRAME n: frames only group opcodes; the stream is read as one.
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return pop(&mut stack),
                b'(' => {
                    if stack.len() >= MAX_STACK {
                        return Err(ModelError::invalid("the pickle's stack is too deep"));
                    }
                    stack.push(Item::Mark);
                }
                b'0' => {
                    stack.pop().ok_or_else(underflow)?;
                }
                b'1' => {
                    pop_mark(&mut stack)?;
                }
                b'2' => {
                    let top = peek(&stack)?;
                    push_id(&mut stack, top)?;
                }
                b'N' => self.push(&mut stack, Obj::None)?,
                0x88 => self.push(&mut stack, Obj::Bool(true))?,
                0x89 => self.push(&mut stack, Obj::Bool(false))?,
                // INT (text), also protocol 0's booleans I01/I00
                b'I' => {
                    let line = self.line()?.to_owned();
                    let obj = match line.as_str() {
                        "01" => Obj::Bool(true),
                        "00" => Obj::Bool(false),
                        text => Obj::Int(text.trim().parse().map_err(|_| {
                            ModelError::invalid(format!("bad pickle integer {text:?}"))
                        })?),
                    };
                    self.push(&mut stack, obj)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le::<4>()?);
                    self.push(&mut stack, Obj::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(&mut stack, Obj::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le::<2>()?);
                    self.push(&mut stack, Obj::Int(i64::from(v)))?;
                }
                // LONG (text)
                b'L' => {
                    let line = self.line()?.trim_end_matches('L').to_owned();
                    let obj = line.parse::<i64>().map(Obj::Int).unwrap_or(Obj::BigInt);
                    self.push(&mut stack, obj)?;
                }
                // LONG1 / LONG4: little-endian two's complement
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        usize::from(self.u8()?)
                    } else {
                        self.len_u32()?
                    };
                    let raw = self.take(n)?;
                    let obj = long_from_bytes(raw);
                    self.push(&mut stack, obj)?;
                }
                b'F' => {
                    let line = self.line()?.to_owned();
                    let v: f64 = line
                        .trim()
                        .parse()
                        .map_err(|_| ModelError::invalid(format!("bad pickle float {line:?}")))?;
                    self.push(&mut stack, Obj::Float(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le::<8>()?);
                    self.push(&mut stack, Obj::Float(v))?;
                }
                // STRING (protocol 0 quoted text): kept as text
                b'S' => {
                    let line = self.line()?.to_owned();
                    let inner = line
                        .strip_prefix(['\'', '"'])
                        .and_then(|l| l.strip_suffix(['\'', '"']))
                        .unwrap_or(&line)
                        .to_owned();
                    self.push(&mut stack, Obj::Str(inner))?;
                }
                // BINSTRING / SHORT_BINSTRING (Python 2 str): bytes, as text when UTF-8
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.len_u32()?
                    } else {
                        usize::from(self.u8()?)
                    };
                    let raw = self.take(n)?.to_vec();
                    let obj = match String::from_utf8(raw) {
                        Ok(s) => Obj::Str(s),
                        Err(e) => Obj::Bytes(e.into_bytes()),
                    };
                    self.push(&mut stack, obj)?;
                }
                // UNICODE (raw-unicode-escape text line)
                b'V' => {
                    let line = self.line()?.to_owned();
                    self.push(&mut stack, Obj::Str(line))?;
                }
                b'X' => {
                    let n = self.len_u32()?;
                    let s = self.text(n)?;
                    self.push(&mut stack, Obj::Str(s))?;
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let s = self.text(n)?;
                    self.push(&mut stack, Obj::Str(s))?;
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let s = self.text(n)?;
                    self.push(&mut stack, Obj::Str(s))?;
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len_u32()?,
                        b'C' => usize::from(self.u8()?),
                        _ => self.len_u64()?,
                    };
                    let raw = self.take(n)?.to_vec();
                    self.push(&mut stack, Obj::Bytes(raw))?;
                }
                0x97 => {
                    return Err(ModelError::unsupported(
                        "the pickle uses out-of-band buffers (NEXT_BUFFER), which a file cannot carry",
                    ));
                }
                // READONLY_BUFFER: no effect on data
                0x98 => {}
                b']' => self.push(&mut stack, Obj::List(Vec::new()))?,
                b')' => self.push(&mut stack, Obj::Tuple(Vec::new()))?,
                b'}' => self.push(&mut stack, Obj::Dict(Vec::new()))?,
                0x8f => self.push(&mut stack, Obj::Set(Vec::new()))?,
                b'l' => {
                    let items = pop_mark(&mut stack)?;
                    self.push(&mut stack, Obj::List(items))?;
                }
                b't' => {
                    let items = pop_mark(&mut stack)?;
                    self.push(&mut stack, Obj::Tuple(items))?;
                }
                0x91 => {
                    let items = pop_mark(&mut stack)?;
                    self.push(&mut stack, Obj::Set(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(pop(&mut stack)?);
                    }
                    items.reverse();
                    self.push(&mut stack, Obj::Tuple(items))?;
                }
                b'd' => {
                    let items = pop_mark(&mut stack)?;
                    let pairs = pairs(&items)?;
                    self.push(&mut stack, Obj::Dict(pairs))?;
                }
                b'a' => {
                    let value = pop(&mut stack)?;
                    let target = peek(&stack)?;
                    self.extend_list(target, &[value])?;
                }
                b'e' => {
                    let items = pop_mark(&mut stack)?;
                    let target = peek(&stack)?;
                    self.extend_list(target, &items)?;
                }
                0x90 => {
                    let items = pop_mark(&mut stack)?;
                    let target = peek(&stack)?;
                    match self.objects.get_mut(target) {
                        Obj::Set(set) => set.extend(items),
                        _ => return Err(ModelError::invalid("ADDITEMS on something not a set")),
                    }
                }
                b's' => {
                    let value = pop(&mut stack)?;
                    let key = pop(&mut stack)?;
                    let target = peek(&stack)?;
                    self.extend_dict(target, &[(key, value)])?;
                }
                b'u' => {
                    let items = pop_mark(&mut stack)?;
                    let target = peek(&stack)?;
                    let pairs = pairs(&items)?;
                    self.extend_dict(target, &pairs)?;
                }
                // GLOBAL "module\nname\n"
                b'c' => {
                    let module = self.line()?.to_owned();
                    let name = self.line()?.to_owned();
                    let obj = global(module, name)?;
                    self.push(&mut stack, obj)?;
                }
                0x93 => {
                    let name = pop(&mut stack)?;
                    let module = pop(&mut stack)?;
                    let (Some(module), Some(name)) =
                        (self.objects.as_str(module), self.objects.as_str(name))
                    else {
                        return Err(ModelError::invalid("STACK_GLOBAL without text names"));
                    };
                    let obj = global(module.to_owned(), name.to_owned())?;
                    self.push(&mut stack, obj)?;
                }
                // REDUCE: callable(*args)
                b'R' => {
                    let args = pop(&mut stack)?;
                    let callable = pop(&mut stack)?;
                    let obj = self.call(callable, args)?;
                    self.push(&mut stack, obj)?;
                }
                // NEWOBJ: cls.__new__(cls, *args)
                0x81 => {
                    let args = pop(&mut stack)?;
                    let cls = pop(&mut stack)?;
                    let obj = self.call(cls, args)?;
                    self.push(&mut stack, obj)?;
                }
                // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
                0x92 => {
                    let _kwargs = pop(&mut stack)?;
                    let args = pop(&mut stack)?;
                    let cls = pop(&mut stack)?;
                    let obj = self.call(cls, args)?;
                    self.push(&mut stack, obj)?;
                }
                b'b' => {
                    let state = pop(&mut stack)?;
                    let target = peek(&stack)?;
                    self.build(target, state)?;
                    if self.is_joblib_wrapper(target) {
                        let array = self.read_joblib_array(target)?;
                        *self.objects.get_mut(target) = Obj::Array(array);
                    }
                }
                // PUT (text), BINPUT, LONG_BINPUT, MEMOIZE
                b'p' | b'q' | b'r' | 0x94 => {
                    let index = match op {
                        b'p' => self
                            .line()?
                            .trim()
                            .parse::<usize>()
                            .map_err(|_| ModelError::invalid("bad pickle memo index"))?,
                        b'q' => usize::from(self.u8()?),
                        b'r' => self.len_u32()?,
                        _ => memo.len(),
                    };
                    if memo.len() >= MAX_MEMO {
                        return Err(ModelError::invalid("the pickle's memo is too large"));
                    }
                    memo.insert(index, peek(&stack)?);
                }
                // GET (text), BINGET, LONG_BINGET
                b'g' | b'h' | b'j' => {
                    let index = match op {
                        b'g' => self
                            .line()?
                            .trim()
                            .parse::<usize>()
                            .map_err(|_| ModelError::invalid("bad pickle memo index"))?,
                        b'h' => usize::from(self.u8()?),
                        _ => self.len_u32()?,
                    };
                    let id = *memo.get(&index).ok_or_else(|| {
                        ModelError::invalid(format!(
                            "the pickle refers to memo entry {index}, which was never stored"
                        ))
                    })?;
                    push_id(&mut stack, id)?;
                }
                b'P' | b'Q' => {
                    return Err(ModelError::unsupported(
                        "the pickle uses persistent ids, which only the program that wrote it can resolve",
                    ));
                }
                b'i' | b'o' | 0x82..=0x84 => {
                    return Err(ModelError::unsupported(format!(
                        "pickle opcode {op:#04x} (INST/OBJ/EXT) is not supported"
                    )));
                }
                other => {
                    return Err(ModelError::invalid(format!(
                        "not a pickle: unknown opcode {other:#04x} at byte {}",
                        self.pos - 1
                    )));
                }
            }
        }
    }
}
