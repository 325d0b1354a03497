// cudasim_rewrite IN.cu OUT.cpp: the lexical rewrite that lets a .cu file compile as C++ against
// cudasim's headers. Line numbers are kept (a #line directive names the original file, and no
// rewrite adds or removes a newline), so compiler errors, __FILE__/__LINE__ and the emulator's
// reports point at the .cu source.
//
//   name<T><<<grid, block, smem, stream>>>(args)
//     -> ::cudasim::kernel("name<T>", __FILE__, __LINE__, name<T>)(grid, block, smem, stream)(args)
//   __shared__ T v[N];
//     -> static thread_local T v[N]; ::cudasim::shared_touch(&v, sizeof(v), __FILE__, __LINE__);
//   extern __shared__ T v[];
//     -> T* v = ::cudasim::dynamic_shared<T>();
// Comments, string and character literals are left alone.
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& file, const std::string& src, size_t pos, const std::string& msg) {
  int line = 1;
  for (size_t i = 0; i < pos && i < src.size(); ++i) line += src[i] == '\n';
  std::cerr << file << ":" << line << ": cudasim_rewrite: " << msg << "\n";
  std::exit(1);
}

// code[i] is true where src[i] is program text (not a comment or literal).
std::vector<bool> code_mask(const std::string& s) {
  std::vector<bool> code(s.size(), true);
  size_t i = 0;
  while (i < s.size()) {
    if (s.compare(i, 2, "//") == 0) {
      while (i < s.size() && s[i] != '\n') code[i++] = false;
    } else if (s.compare(i, 2, "/*") == 0) {
      const size_t end = s.find("*/", i + 2);
      const size_t stop = end == std::string::npos ? s.size() : end + 2;
      while (i < stop) code[i++] = false;
    } else if (s[i] == '"' || s[i] == '\'') {
      // A ' between digits is a digit separator (1'000), not a literal.
      if (s[i] == '\'' && i > 0 && std::isxdigit(static_cast<unsigned char>(s[i - 1])) &&
          i + 1 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1]))) {
        ++i;
        continue;
      }
      const char q = s[i];
      code[i++] = false;
      while (i < s.size() && s[i] != q) {
        if (s[i] == '\\') code[i++] = false;
        if (i < s.size()) code[i++] = false;
      }
      if (i < s.size()) code[i++] = false;
    } else if (s[i] == '#' ) {
      // Preprocessor line (with continuations): #include <a/b.h> must not be scanned.
      size_t j = i;
      while (j > 0 && (s[j - 1] == ' ' || s[j - 1] == '\t')) --j;
      if (j == 0 || s[j - 1] == '\n') {
        while (i < s.size() && s[i] != '\n') {
          if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '\n') code[i++] = false;
          code[i++] = false;
        }
      } else {
        ++i;
      }
    } else {
      ++i;
    }
  }
  return code;
}

bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

bool token_at(const std::string& s, const std::vector<bool>& code, size_t i, const std::string& tok) {
  if (s.compare(i, tok.size(), tok) != 0 || !code[i]) return false;
  if (i > 0 && ident_char(s[i - 1])) return false;
  const size_t e = i + tok.size();
  return e >= s.size() || !ident_char(s[e]);
}

// End (index of the ';') of the statement starting at i, at bracket depth 0.
size_t statement_end(const std::string& s, const std::vector<bool>& code, size_t i) {
  int depth = 0;
  for (; i < s.size(); ++i) {
    if (!code[i]) continue;
    const char c = s[i];
    if (c == '(' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == ']' || c == '}') --depth;
    if (c == ';' && depth == 0) return i;
  }
  return std::string::npos;
}

// The declared name in a declaration body such as " __align__(16) float As[2][8][132]".
std::string declared_name(const std::string& decl, size_t* name_pos) {
  size_t stop = decl.size();
  int depth = 0;
  for (size_t i = 0; i < decl.size(); ++i) {
    const char c = decl[i];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == '[' || c == '=' || c == '{')) {
      stop = i;
      break;
    }
  }
  size_t e = stop;
  while (e > 0 && std::isspace(static_cast<unsigned char>(decl[e - 1]))) --e;
  size_t b = e;
  while (b > 0 && ident_char(decl[b - 1])) --b;
  *name_pos = b;
  return decl.substr(b, e - b);
}

std::string rewrite(const std::string& file, const std::string& s) {
  const std::vector<bool> code = code_mask(s);
  std::string out;
  out.reserve(s.size() + 4096);
  size_t i = 0, copied = 0;
  while (i < s.size()) {
    if (code[i] && s.compare(i, 3, "<<<") == 0) {
      // Kernel expression: identifier (with ::) and an optional template argument list.
      size_t j = i;
      while (j > 0 && std::isspace(static_cast<unsigned char>(s[j - 1]))) --j;
      if (j > 0 && s[j - 1] == '>') {
        int depth = 0;
        size_t k = j;
        while (k > 0) {
          --k;
          if (!code[k]) continue;
          if (s[k] == '>') ++depth;
          if (s[k] == '<' && --depth == 0) break;
        }
        if (depth != 0) die(file, s, i, "unbalanced template arguments before <<<");
        j = k;
        while (j > 0 && std::isspace(static_cast<unsigned char>(s[j - 1]))) --j;
      }
      while (j > 0 && (ident_char(s[j - 1]) || s[j - 1] == ':')) --j;
      const size_t start = j;
      if (start < copied || start == i) die(file, s, i, "cannot find the kernel name before <<<");
      // Configuration up to the matching >>>.
      size_t q = i + 3;
      int depth = 0;
      for (; q < s.size(); ++q) {
        if (!code[q]) continue;
        const char c = s[q];
        if (c == '(' || c == '[' || c == '{') ++depth;
        if (c == ')' || c == ']' || c == '}') --depth;
        if (depth == 0 && s.compare(q, 3, ">>>") == 0) break;
      }
      if (q >= s.size()) die(file, s, i, "no >>> after <<<");
      std::string name = s.substr(start, i - start);
      while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
      std::string quoted;
      for (char c : name)
        if (c != '\n') quoted += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
      out.append(s, copied, start - copied);
      out += "::cudasim::kernel(\"" + quoted + "\", __FILE__, __LINE__, ";
      out.append(s, start, i - start);
      out += ")(";
      out.append(s, i + 3, q - (i + 3));
      out += ")";
      i = copied = q + 3;
      continue;
    }
    if (token_at(s, code, i, "__shared__")) {
      const size_t semi = statement_end(s, code, i);
      if (semi == std::string::npos) die(file, s, i, "no ; after __shared__");
      std::string decl = s.substr(i + 10, semi - (i + 10));
      // `extern` right before?
      size_t e = i;
      while (e > 0 && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
      const bool is_extern = e >= 6 && s.compare(e - 6, 6, "extern") == 0 && (e == 6 || !ident_char(s[e - 7]));
      size_t name_pos = 0;
      const std::string name = declared_name(decl, &name_pos);
      if (name.empty()) die(file, s, i, "cannot find the name of the __shared__ variable");
      if (decl.find(',') != std::string::npos && decl.find('(') == std::string::npos)
        die(file, s, i, "declare one __shared__ variable per statement");
      if (is_extern) {
        std::string type = decl.substr(0, name_pos);
        // Drop alignment attributes: the dynamic buffer is 16-byte aligned.
        for (size_t a; (a = type.find("__align__")) != std::string::npos;) {
          const size_t close = type.find(')', a);
          type.erase(a, close == std::string::npos ? std::string::npos : close + 1 - a);
        }
        std::string newlines;
        for (size_t k = e - 6; k < semi; ++k)
          if (s[k] == '\n') newlines += '\n';
        out.append(s, copied, (e - 6) - copied);
        out += type + "* " + name + " = ::cudasim::dynamic_shared<" + type + ">();" + newlines;
      } else {
        out.append(s, copied, i - copied);
        out += "static thread_local" + decl + "; ::cudasim::shared_touch(&" + name + ", sizeof(" +
               name + "), __FILE__, __LINE__);";
      }
      i = copied = semi + 1;
      continue;
    }
    ++i;
  }
  out.append(s, copied, std::string::npos);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: cudasim_rewrite IN.cu OUT.cpp\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::cerr << "cudasim_rewrite: cannot read " << argv[1] << "\n";
    return 1;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string result = "#line 1 \"" + std::string(argv[1]) + "\"\n" + rewrite(argv[1], buf.str());
  const std::string tmp = std::string(argv[2]) + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << result;
    if (!out) {
      std::cerr << "cudasim_rewrite: cannot write " << tmp << "\n";
      return 1;
    }
  }
  if (std::rename(tmp.c_str(), argv[2]) != 0) {
    std::cerr << "cudasim_rewrite: cannot rename " << tmp << " to " << argv[2] << "\n";
    return 1;
  }
  return 0;
}
